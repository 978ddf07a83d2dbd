"""`vsa-orchestrate status PLAN`: one read-only view of the whole site.

observe (vSphere snapshot + per-node facts over SSH) -> health (pure) -> render
(rich tables or JSON). Nothing is written anywhere: no vSphere task, no file
or command that changes a node, nothing in the state folder.
"""
