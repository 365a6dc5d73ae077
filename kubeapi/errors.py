"""What can go wrong talking to the API server, as one small tree.

    ApiError(status, reason, message)   any answer that is not a success
    ├── NotFound        404
    ├── Conflict        409 (stale resourceVersion, or already exists)
    ├── Forbidden       403 (RBAC)
    ├── Gone            410 (a watch's resourceVersion was compacted: list again)
    └── Unreachable     no HTTP answer at all (refused, timed out, TLS failed)

Callers catch the class they can act on; the message is the API server's own sentence.
"""


class ApiError(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}" if status else message)
        self.status = status
        self.reason = reason
        self.message = message


class NotFound(ApiError):
    pass


class Conflict(ApiError):
    pass


class Forbidden(ApiError):
    pass


class Gone(ApiError):
    pass


class Unreachable(ApiError):
    pass


_BY_STATUS: dict[int, type[ApiError]] = {404: NotFound, 409: Conflict, 403: Forbidden, 410: Gone}


def from_status(status: int, reason: str, message: str) -> ApiError:
    return _BY_STATUS.get(status, ApiError)(status, reason, message)
