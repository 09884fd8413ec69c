"""moto's server, with each request handled atomically.

moto's own `moto_server` runs requests on concurrent threads without a lock, so two conditional
writes to one item can both pass their condition (seen here: 50 concurrent optimistic updates
gave 50 versions instead of 51). Real DynamoDB serialises writes per item; one lock around each
request gives the tests that guarantee. Usage: moto_server.py HOST PORT
"""

import os
import sys
import threading

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import run_simple


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    os.environ.setdefault("MOTO_PORT", str(port))
    app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()

    def atomic(environ, start_response):
        with lock:
            return list(app(environ, start_response))

    run_simple(host, port, atomic, threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
