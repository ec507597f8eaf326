"""jinja2: templates built from a string share a bounded, cached Environment.

``jinja2.Template(source, **options)`` gets its Environment from
``jinja2.environment.get_spontaneous_environment``, decorated with
``functools.lru_cache(maxsize=10)`` (jinja2 3.x): the ten most recent option
sets keep their Environment alive on purpose. That is a bounded cache, not a
leak (https://github.com/pallets/jinja/blob/3.1.6/src/jinja2/environment.py).

Lifecycle: render twelve pages, each with a template of its own option set
(a different ``line_comment_prefix``). Tracked, so they must be collectable:
the templates, the page objects passed to ``render``, and the Environments of
the two oldest option sets, which the lru_cache has evicted. Kept on purpose
(not tracked): the Environment of the newest option set, still cached.
"""

from __future__ import annotations

import jinja2
from _harness import run


class Page:
    def __init__(self, title: str) -> None:
        self.title = title


def lifecycle(track, keep):
    html = []
    for i in range(12):
        template = track(jinja2.Template("<h1>{{ page.title }}</h1>", line_comment_prefix=f"##{i}"))
        page = track(Page(f"page {i}"))
        html.append(template.render(page=page))
        if i < 2:
            track(template.environment)  # evicted by the ten newer option sets
        elif i == 11:
            keep(template.environment)  # still in the lru_cache, on purpose
    cache = jinja2.environment.get_spontaneous_environment.cache_info()
    return {"rendered": len(html), "cache_size": cache.currsize, "cache_maxsize": cache.maxsize}


if __name__ == "__main__":
    run("jinja2_spontaneous_env", "jinja2", lifecycle)
