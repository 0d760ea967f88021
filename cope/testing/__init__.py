"""Stand-ins for servers that cannot run on a CPU-only machine, faithful to their wire formats."""

from cope.testing.stub_server import StubServer

__all__ = ["StubServer"]
