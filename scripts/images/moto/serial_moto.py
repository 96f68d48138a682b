"""moto's server, one request at a time.

moto checks a conditional write (DynamoDB's ConditionExpression, S3's If-Match) and
applies it in two steps with no lock between them, so two concurrent conditional writes
can both succeed — which DynamoDB and S3 never allow, and which the conformance suite
rightly reports as lost updates. Serialising requests makes the emulator as atomic as
the services it stands for; connections stay concurrent (keep-alive).

Usage: python3 serial_moto.py HOST PORT
"""

import os
import sys
import threading

from moto.server import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple

host, port = sys.argv[1], int(sys.argv[2])
os.environ.setdefault("MOTO_PORT", str(port))
app = DomainDispatcherApplication(create_backend_app)
one_at_a_time = threading.Lock()


def serial(environ, start_response):
    with one_at_a_time:
        # The whole response is produced inside the lock.
        return list(app(environ, start_response))


run_simple(host, port, serial, threaded=True)
