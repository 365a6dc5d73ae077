"""The certificate job's one error type.

```
CertError                  anything the job cannot do; `job.main` prints its message on one line
                           and exits 1
└── ConflictError          a write lost an optimistic-concurrency race (HTTP 409); `job.run`
                           retries the whole read-decide-write a bounded number of times before
                           letting it surface as a plain CertError
```

Messages are written for the operator reading a failed Job's log: they name the object, and for
RBAC failures the verb and resource the ServiceAccount is missing.
"""


class CertError(Exception):
    """The job cannot finish; the message is the one line the operator sees."""


class ConflictError(CertError):
    """Someone else changed the object between our read and our write."""
