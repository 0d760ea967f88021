"""A stand-in for the `sglang` package on machines without a GPU: only `launch_server`."""
