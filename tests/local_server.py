"""Local servers for tests: a free port on 127.0.0.1, and the Space app served on one."""

from __future__ import annotations

import socket
from contextlib import contextmanager
from typing import Iterator, Tuple


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve_app(demo, limits) -> Iterator[Tuple[str, object]]:
    """``(url, demo)`` while ``demo`` (from ``space_app.build_demo``) serves on a free local port."""
    from instrument_classifier import space_app

    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                **space_app.launch_kwargs(limits))
    try:
        yield f"http://127.0.0.1:{port}/", demo
    finally:
        demo.close()
