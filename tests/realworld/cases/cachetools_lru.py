"""cachetools: a ``cached`` function backed by an ``LRUCache(maxsize=8)``.

The cache keeps the eight most recent results alive on purpose; older ones are
evicted and must be collectable, and the request objects the function was
called with are not stored at all (the key is the user id)
(https://cachetools.readthedocs.io/en/stable/#cachetools.LRUCache).

Lifecycle: serve twenty requests for twenty users. Tracked: every request and
the profiles of users 0-11 (evicted by the eight newer ones). Kept on purpose
(not tracked): the profiles of users 12-19, still cached.
"""

from __future__ import annotations

from _harness import run
from cachetools import LRUCache, cached

PROFILE_CACHE: LRUCache = LRUCache(maxsize=8)


class Request:
    def __init__(self, user_id: int) -> None:
        self.user_id = user_id
        self.headers = {"accept": "application/json"}


class Profile:
    def __init__(self, user_id: int) -> None:
        self.user_id = user_id
        self.name = f"user {user_id}"


@cached(PROFILE_CACHE, key=lambda request: request.user_id)
def load_profile(request: Request) -> Profile:
    return Profile(request.user_id)


def lifecycle(track, keep):
    for user_id in range(20):
        request = track(Request(user_id))
        profile = load_profile(request)
        if user_id < 12:
            track(profile)
        else:
            keep(profile)
    return {"cache_size": len(PROFILE_CACHE), "cache_maxsize": PROFILE_CACHE.maxsize}


if __name__ == "__main__":
    run("cachetools_lru", "cachetools", lifecycle)
