"""Which rule a request falls under, and whether it carries file content.

Rules are searched in order and the first whose ``regx`` matches the full URL decides
(``config/proxy.py``). Under a rule that is not ``direct``, a request goes through the mesh
when it is a plain ``GET`` of file content; everything else a hub serves is metadata (repo
info, tree listings, refs, ``HEAD``s, the ``api/`` paths) and reaches the origin unchanged, so
every header the SDKs read arrives as the hub sent it. ModelScope serves file bytes under
``/api/v1/{models|datasets}/.../repo?FilePath=...``: that one ``api`` path is content.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from damselfly.config.proxy import ProxyRule

_MODELSCOPE_FILE = re.compile(r"^/api/v1/(models|datasets)/[^/]+/[^/]+/repo/?$")


@dataclass(frozen=True)
class CompiledRule:
    rule: ProxyRule
    pattern: re.Pattern[str]

    @property
    def label(self) -> str:
        return self.rule.label


class RuleSet:
    def __init__(self, rules: Sequence[ProxyRule]) -> None:
        self.rules = [CompiledRule(rule, re.compile(rule.regx)) for rule in rules]
        self._intercepted = {host for rule in rules for host in rule.certs.hosts}

    def match(self, url: str) -> CompiledRule | None:
        """The first rule whose regx matches ``url``."""
        return next((rule for rule in self.rules if rule.pattern.search(url)), None)

    def intercepts(self, host: str) -> bool:
        """Whether a CONNECT to ``host`` is terminated here (else: a blind tunnel)."""
        return host.lower().strip("[]") in self._intercepted


def is_content(method: str, url: str) -> bool:
    """A GET of file bytes (as opposed to a metadata call)."""
    if method != "GET":
        return False
    parts = urlsplit(url)
    if not parts.path.startswith("/api/"):
        return True
    return bool(_MODELSCOPE_FILE.match(parts.path)) and "FilePath" in parse_qs(parts.query)


def upgrade_scheme(url: str, rule: CompiledRule | None) -> str:
    """``http://`` becomes ``https://`` under a ``use_https`` rule."""
    if rule is not None and rule.rule.use_https and url.startswith("http://"):
        return "https://" + url.removeprefix("http://")
    return url
