"""Enterprise codes (SPEC.md §6.3, issue 11): the closed list of enterprise attributes
and what a partner may see of an enterprise. Pure: no I/O.

An enterprise has ``name`` and ``uscc`` and optional ``attributes`` (only the names in
:data:`EXTRA_ATTRIBUTES`). A partner registered with ``enterprise_attributes`` (names
from :data:`ENTERPRISE_ATTRIBUTES`) sees exactly those of an enterprise's values that
it has; a partner registered with none sees no enterprise attribute at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

EXTRA_ATTRIBUTES = ("legal_representative", "business_scope", "licences")
"""Names an enterprise's ``attributes`` object may hold (strings, or lists of strings
for ``licences``)."""

ENTERPRISE_ATTRIBUTES = ("name", "uscc", *EXTRA_ATTRIBUTES)
"""Names a partner's ``enterprise_attributes`` may list."""

EnterpriseValue = str | list[str]


def public_view(
    *, name: str, uscc: str, attributes: Mapping[str, EnterpriseValue], allowed: Iterable[str]
) -> dict[str, EnterpriseValue]:
    """The enterprise's values a partner allowed ``allowed`` may see (in the order of
    ``allowed``; names it does not have are left out)."""
    have: dict[str, EnterpriseValue] = {"name": name, "uscc": uscc, **attributes}
    return {k: (list(v) if isinstance(v, list) else v) for k in allowed
            if (v := have.get(k)) is not None}
