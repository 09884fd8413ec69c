"""moto's server, with each request handled atomically.

moto's own `moto_server` runs requests on concurrent threads without a lock, so two conditional
writes to one item can both pass their condition (seen here: 50 concurrent optimistic updates
gave 50 versions instead of 51). Real DynamoDB serialises writes per item; one lock around each
request gives the tests that guarantee.

moto's TransactWriteItems also snapshots a table for its rollback once per item of the
transaction that names it (a deep copy of the whole table each time): a transaction of 100
items on growing tables copied them 100 times over, and a test suite's server grew past 14 GB
and was killed. Here a transaction copies each table it touches once; the rollback is the
same. Usage: moto_server.py HOST PORT
"""

import copy
import os
import sys
import threading
import types

import moto.dynamodb.models as dynamodb_models
from moto.dynamodb.models.table import Table

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import run_simple


def copy_each_table_once() -> None:
    """Makes TransactWriteItems deep-copy each table it touches once, not once per item."""
    original = dynamodb_models.DynamoDBBackend.transact_write_items

    def transact_write_items(self, transact_items):
        copies = {}

        def deepcopy(value, memo=None):
            if isinstance(value, Table):
                if id(value) not in copies:
                    copies[id(value)] = (value, copy.deepcopy(value, memo))
                return copies[id(value)][1]
            return copy.deepcopy(value, memo)

        module_copy = dynamodb_models.copy
        dynamodb_models.copy = types.SimpleNamespace(deepcopy=deepcopy, copy=copy.copy)
        try:
            return original(self, transact_items)
        finally:
            dynamodb_models.copy = module_copy

    dynamodb_models.DynamoDBBackend.transact_write_items = transact_write_items


def main() -> None:
    copy_each_table_once()
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
