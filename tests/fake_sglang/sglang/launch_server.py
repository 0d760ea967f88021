"""`python -m sglang.launch_server` as the run starts it, serving cope's stub: the server
reports --enable-deterministic-inference as SGLang does (in /server_info), and the command
line and environment it was started with are written to $FAKE_SGLANG_RECORD."""

import argparse
import json
import os
import signal
import threading

from cope.testing import StubServer

parser = argparse.ArgumentParser()
parser.add_argument("--model-path", required=True)
parser.add_argument("--host", required=True)
parser.add_argument("--port", type=int, required=True)
parser.add_argument("--enable-deterministic-inference", action="store_true")
args, rest = parser.parse_known_args()
with open(os.environ["FAKE_SGLANG_RECORD"], "w") as record:
    json.dump({"args": vars(args), "rest": rest,
               "SGLANG_RETURN_ORIGINAL_LOGPROB": os.environ.get("SGLANG_RETURN_ORIGINAL_LOGPROB")},
              record)
stub = StubServer(host=args.host, port=args.port, health_warmup=2,
                  deterministic=args.enable_deterministic_inference).start()
stopped = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stopped.set())
stopped.wait()
stub.stop()
