"""What a reconcile pass knows about its campaign's past without asking the API server.

Set by reconcile.reconcile for the pass it runs (context variables: each handler runs in its
own task), read where a child is looked up before it is written:

- never provisioned (no pass finished: status.observedGeneration unset): none of the
  optional children the spec may have dropped (quota, autoscaler, learner) can be there to
  delete, so they are not looked for (and resyncs take them as missing for the 15 minutes
  clients/kube.py trusts what it knows). One left by a crashed first attempt under an older
  spec is deleted by the next pass of a spec change or restart, or within those 15 minutes.
- just created (the create handler's first attempt, never provisioned): the campaign's own
  Secrets cannot exist yet, so their stored passwords are not read; new ones are made. If a
  crashed earlier attempt did store some, the new passwords replace them the way a first
  password is set (Secret first, then the role or Kafka user), so nothing is left unknown.

A thousand campaigns applied at once save six reads each.
"""

from __future__ import annotations

import contextvars

_never_provisioned: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "never_provisioned", default=False
)
_just_created: contextvars.ContextVar[bool] = contextvars.ContextVar("just_created", default=False)


def begin(observed_generation: object, created: bool, retry: int) -> None:
    """Called at the start of a pass: what its campaign's status and trigger say."""
    never = observed_generation is None
    _never_provisioned.set(never)
    _just_created.set(never and created and retry == 0)


def never_provisioned() -> bool:
    return _never_provisioned.get()


def just_created() -> bool:
    return _just_created.get()
