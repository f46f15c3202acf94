"""Login throttling: failures counted per (login, source), per source IP and per login,
then growing blocks.

The rules (issue 4, issue 11; OWASP ASVS V2.2.1, "anti-automation"):

- Attempts without success are counted in three scopes:
  `source`: the login with the client IP (`AGORA_LOGIN_MAX_FAILURES`, 5 in
  `AGORA_LOGIN_FAILURE_WINDOW`, 15 min); `ip`: the client IP across logins
  (`AGORA_LOGIN_IP_MAX_FAILURES`, 50, same window); `login`: the login from everywhere
  (`AGORA_LOGIN_GLOBAL_MAX_FAILURES`, 100 in `AGORA_LOGIN_GLOBAL_WINDOW`, an hour).
  The login part is case-folded, whether or not an account has it.
- Why three: a block per login alone lets any stranger lock the owner out with five
  wrong passwords (issue 11). The small limit is per (login, source), so a stranger
  blocks only themselves; the per-login cap still holds guessing spread over many
  addresses to about 100 per hour per account (ASVS V2.2.1).
- Each attempt is counted *before* its password is checked, and a success takes its
  own back. Counting after the check would let a burst of simultaneous requests all
  pass the check before the first failure is counted: with this order, however many
  arrive at once, only the first 5 per (login, source) (50 per IP) reach argon2.
- The first attempt over a limit starts a block of that key. While a key is blocked
  every login through it answers 429 `Too many login attempts` with `Retry-After`, and
  the password is not even checked: a blocked attacker learns nothing, right password
  or not, and costs us no argon2 work. After a `source` or `ip` block the key counts
  afresh (a new round), so a new block takes a full set of new failures; a `login`
  block keeps the count until its window ends, so each attempt after a block blocks
  again (longer): the cap stays a cap per window.
- Each new block of the same key lasts `login_block_growth` times longer than the one
  before (60 s, 120 s, 240 s ... by default), capped at `login_block_max_seconds`. The
  level is remembered for `login_block_memory` (24 h) after the key's last block.
- A success clears its (login, source) count, so an owner's earlier typos are
  forgiven, and marks the source as known for the login (`login_known_source_ttl`,
  30 days). It keeps the block levels and the per-login count: they measure pressure
  on the account, and resetting them on every owner login would hand the attacker
  fresh budgets on exactly the accounts in use. From the IP's count it takes back only
  its own attempt, or one account of the attacker's own would reset their IP between
  guesses at other people's; from the login's, only its own, or the owner's logins
  would reset the cap.
- A source known for the login is not refused by the login's own block: a botnet that
  reaches the per-login cap locks out new sources, not the owner's usual ones.
- Nothing here reads the account, and the check runs before the database is asked, so
  an unknown login is throttled exactly like a known one: the answers never tell
  whether a login exists. (The one exception is documented in docs/security.md: while
  a login is blocked by its cap, someone sharing the owner's address can notice that
  their attempts still pass.)

Fail open. The cache (Redis) is an accelerator, not the source of truth: when it is
unreachable throttling is skipped, with a warning, and logins go on. Failing closed
would turn a cache outage into a login outage for every user, which is a worse attack
than the guessing it prevents; argon2 still makes every guess slow meanwhile.
"""

from __future__ import annotations

import logging
import math
from typing import Literal
from urllib.parse import quote

from agora.core.audit import Audit
from agora.core.errors import TooManyRequests
from agora.core.settings import Settings
from agora.ports.cache import Cache, CacheUnavailable

log = logging.getLogger("agora.auth.throttle")

TOO_MANY_ATTEMPTS = "Too many login attempts"

Scope = Literal["source", "ip", "login"]


def login_subject(login: str) -> str:
    """The login's part of a key: case-folded like the account lookup, and quoted so a
    login holding `:` or spaces cannot be mistaken for another key."""
    return quote(login.casefold(), safe="")


class LoginThrottle:
    def __init__(self, cache: Cache, audit: Audit, settings: Settings) -> None:
        self._cache = cache
        self._audit = audit
        self._prefix = settings.key_prefix
        self._limits: dict[Scope, int] = {
            "source": settings.login_max_failures,
            "ip": settings.login_ip_max_failures,
            "login": settings.login_global_max_failures,
        }
        self._windows: dict[Scope, float] = {
            "source": settings.login_failure_window,
            "ip": settings.login_failure_window,
            "login": settings.login_global_window,
        }
        self._known_ttl = settings.login_known_source_ttl
        self._first_block = settings.login_block_seconds
        self._growth = settings.login_block_growth
        self._max_block = settings.login_block_max_seconds
        self._level_memory = settings.login_block_memory

    def key(self, kind: str, scope: Scope, subject: str) -> str:
        """`<prefix>login-fail:login:alice`, `<prefix>login-block:ip:203.0.113.9`, ...

        Kinds: `login-fail` (attempts in the window), `login-ok` (the IP's successes in
        the same window), `login-block` (the block; its TTL is what is left of it),
        `login-block-level` (how many blocks in a row), `login-known` (a source that
        logged in to the login). Subjects: the quoted login, the IP, or both
        (`<login>:<ip>`; a quoted login holds no `:`).
        """
        return f"{self._prefix}{kind}:{scope}:{subject}"

    def block_seconds(self, level: int) -> float:
        """How long the `level`-th block in a row lasts (level 1 is the first)."""
        try:
            seconds = self._first_block * self._growth ** (level - 1)
        except OverflowError:
            return self._max_block
        return min(seconds, self._max_block)

    async def check(self, login: str, ip: str | None) -> None:
        """Count this attempt; raise TooManyRequests if the login or the IP is blocked
        or this attempt is over a limit. Call before anything else of the login."""
        try:
            refusal = await self._refusal(login, ip)
        except CacheUnavailable as exc:
            self._fail_open(exc)
            return
        if refusal is None:
            return
        scope, left = refusal
        retry_after = max(1, math.ceil(left))
        await self._audit.record(
            "auth.login_throttled", login=login[:64], ip=ip, retry_after=retry_after, scope=scope
        )
        raise TooManyRequests(TOO_MANY_ATTEMPTS, retry_after)

    async def succeeded(self, login: str, ip: str | None) -> None:
        """The right password: forgive this source's attempts, remember it as known,
        take this one back from the IP's and the login's counts (see the module's
        docstring)."""
        source = self._source(login, ip)
        try:
            rounds = await self._rounds(self._subjects(login, ip))
            await self._cache.delete(self._counter("login-fail", "source", source, rounds))
            await self._cache.set(self.key("login-known", "source", source), b"1", self._known_ttl)
            for scope, subject in self._subjects(login, ip):
                if scope != "source":
                    await self._take_back(scope, subject, rounds)
        except CacheUnavailable as exc:
            self._fail_open(exc)

    async def _take_back(self, scope: Scope, subject: str, rounds: dict[Scope, int]) -> None:
        """A success's own attempt no longer counts against the key's window."""
        left = await self._cache.ttl(self._counter("login-fail", scope, subject, rounds))
        if left is not None:  # else the window is over and nothing is owed
            # Dies with the window it belongs to, so it is never carried over.
            successes = self._counter("login-ok", scope, subject, rounds)
            await self._cache.incr(successes, left)
            await self._cache.expire(successes, left)

    async def _rounds(self, subjects: list[tuple[Scope, str]]) -> dict[Scope, int]:
        """Each key's round: how many blocks it has had (its level). A `source` or `ip`
        key counts each round's attempts afresh, so after a block a new block takes a
        full set of new failures; the login's cap keeps one count per window."""
        rounds: dict[Scope, int] = {}
        for scope, subject in subjects:
            level = None
            if scope != "login":
                level = await self._cache.get(self.key("login-block-level", scope, subject))
            rounds[scope] = int(level or 0)
        return rounds

    def _counter(self, kind: str, scope: Scope, subject: str, rounds: dict[Scope, int]) -> str:
        """`login-fail` or `login-ok` of the key's round (`#<round>`: no IP or quoted
        login holds a `#`). Counting in a new key instead of deleting the old count
        closes a race: an attempt that looked before a block and counts after it still
        counts in the old round, over the limit, and is refused."""
        key = self.key(kind, scope, subject)
        return f"{key}#{rounds[scope]}" if rounds.get(scope) else key

    async def _refusal(self, login: str, ip: str | None) -> tuple[Scope, float] | None:
        """The scope that refuses this attempt and the seconds left of its block."""
        subjects = self._subjects(login, ip)
        if await self._cache.get(self.key("login-known", "source", self._source(login, ip))):
            # The owner's usual source: the login's own cap does not lock it out.
            subjects = [(scope, subject) for scope, subject in subjects if scope != "login"]
        rounds = await self._rounds(subjects)  # read before the blocks: see `_counter`
        blocked = []
        for scope, subject in subjects:
            left = await self._cache.ttl(self.key("login-block", scope, subject))
            if left is not None:
                blocked.append((left, scope))
        if blocked:
            left, scope = max(blocked)  # the client has to wait for the longer one
            return scope, left
        for scope, subject in subjects:
            if await self._count_attempt(scope, subject, rounds) > self._limits[scope]:
                return scope, await self._block(scope, subject, login, ip)
        return None

    async def _count_attempt(self, scope: Scope, subject: str, rounds: dict[Scope, int]) -> int:
        """The key's attempts in the window, this one included, less its successes."""
        counter = self._counter("login-fail", scope, subject, rounds)
        attempts = await self._cache.incr(counter, self._windows[scope])
        if scope == "source":  # a success deletes the source's count instead
            return attempts
        successes = await self._cache.get(self._counter("login-ok", scope, subject, rounds))
        return attempts - int(successes or 0)

    async def _block(self, scope: Scope, subject: str, login: str, ip: str | None) -> float:
        """Start the key's block, unless a simultaneous attempt just did; seconds left."""
        block_key = self.key("login-block", scope, subject)
        # Claimed with a placeholder TTL: of simultaneous attempts over the limit, only
        # one raises the level, which is known only once claimed.
        if not await self._cache.set_if_absent(block_key, b"0", self._first_block):
            return await self._cache.ttl(block_key) or self._first_block
        level_key = self.key("login-block-level", scope, subject)
        # The new level is also the key's next round: later attempts count afresh.
        level = await self._cache.incr(level_key, self._level_memory)
        # incr sets the TTL only when it creates the key: remember from the last block.
        await self._cache.expire(level_key, self._level_memory)
        seconds = self.block_seconds(level)
        await self._cache.set(block_key, str(level).encode(), seconds)
        await self._audit.record(
            "auth.login_blocked",
            login=login[:64],
            ip=ip,
            scope=scope,
            level=level,
            seconds=seconds,
        )
        return seconds

    def _source(self, login: str, ip: str | None) -> str:
        return f"{login_subject(login)}:{ip}" if ip else login_subject(login)

    def _subjects(self, login: str, ip: str | None) -> list[tuple[Scope, str]]:
        # Checked and counted in this order: the narrowest scope first.
        subjects: list[tuple[Scope, str]] = [("source", self._source(login, ip))]
        if ip:  # no client address (some test transports): no IP scope
            subjects.append(("ip", ip))
        subjects.append(("login", login_subject(login)))
        return subjects

    def _fail_open(self, error: CacheUnavailable) -> None:
        log.warning("login throttling skipped, the cache is unavailable: %s", error)
