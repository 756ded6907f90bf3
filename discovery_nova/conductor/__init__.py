"""The decentralized conductor: nova's conductor plus forwarding between PoPs.

``discovery-conductor`` serves nova's conductor RPC API in place of
nova-conductor. A build the local PoP cannot place (NoValidHost), or whose
hints name a better PoP, is offered to the other PoPs' conductors nearest
first, over the federation transport; the origin keeps a record of the
server so that the user sees and deletes it where they asked for it.
"""
