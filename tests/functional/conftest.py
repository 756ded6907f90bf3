"""Monkey-patch the functional test process before anything imports Nova.

Nova's in-process harness (``nova.tests.functional``) runs its services
as eventlet greenthreads and patches the process when it is imported. A
test module that imports ``nova.context`` first (most do, above their
``nova_base`` import) brings in oslo.db's enginefacade and oslo.context
unpatched: their per-thread state (the transaction of a request context)
is then a native thread-local shared by every greenthread, and a compute
saving a record while another greenthread reads with the same context
fails now and then with "Can't upgrade a READER transaction to a WRITER
mid-transaction" (nova bug 1773102 names the import order). pytest
imports this file before any test module of this directory.
"""

from nova import monkey_patch

monkey_patch.patch()
