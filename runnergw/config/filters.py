"""A route's ``filters`` list: each item a filter name, or a name with its options.

```yaml
filters:
  - token
  - role
  - mycompany.filters.Quota: {perDay: 1000}
```

The options are only kept here, located; they are read against the filter's own ``Options``
class when the route is built (``runnergw.filters.registry``), which reports their problems
with file, line and YAML path like every other setting.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from runnergw.config.errors import Origin
from runnergw.config.reader import MapReader, describe
from runnergw.config.yamlfile import MarkedMap

__all__ = ["FilterSpec", "filter_names", "read_filter_specs"]


@attrs.frozen
class FilterSpec:
    """One item of a ``filters`` list."""

    name: str
    options: MarkedMap | None = attrs.field(default=None, eq=False)
    """The options as written (None: none given)."""
    path: str = attrs.field(default="", eq=False)
    """YAML path of the item, e.g. ``runners[0].filters[2]``."""
    origin: Origin = attrs.field(default=Origin("<defaults>"), eq=False)


def filter_names(specs: Sequence[FilterSpec]) -> tuple[str, ...]:
    """The names, in chain order."""
    return tuple(spec.name for spec in specs)


def read_filter_specs(section: MapReader, key: str,
                      default: Sequence[str]) -> tuple[FilterSpec, ...]:
    """Read ``key`` as a list of filter names or one-key mappings ``{name: options}``."""
    value = section.raw(key)
    path = section.child_path(key)
    if value is None:
        return tuple(FilterSpec(name, None, f"{path}[{index}]", section.origin_of(key))
                     for index, name in enumerate(default))
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        section.error(key, f"expected a list of filters, got {describe(value)}")
        return ()
    origins = getattr(value, "item_origins", None) or [section.origin_of(key)] * len(value)
    specs = []
    for index, item in enumerate(value):
        item_path, origin = f"{path}[{index}]", origins[index]
        if isinstance(item, str) and item:
            specs.append(FilterSpec(item, None, item_path, origin))
        elif isinstance(item, MarkedMap) and len(item) == 1:
            (name, options), = item.items()
            if options is not None and not isinstance(options, MarkedMap):
                section.sink.add(origin, f"{item_path}.{name}",
                                 f"expected the filter's options as a mapping, got "
                                 f"{describe(options)}")
                continue
            specs.append(FilterSpec(name, options, item_path, origin))
        else:
            section.sink.add(origin, item_path,
                             f"expected a filter name or {{name: options}}, got {describe(item)}")
    return tuple(specs)
