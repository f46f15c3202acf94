"""Login throttling: attempts counted per login and per client IP, then growing blocks.

The rules (issue 4; OWASP ASVS V2.2.1, "anti-automation"):

- Attempts without success are counted per login key (the login case-folded, whether
  or not an account has it) and per client IP, in a window that starts at the first.
- Each attempt is counted *before* its password is checked, and a success takes its
  own back. Counting after the check would let a burst of simultaneous requests all
  pass the check before the first failure is counted: with this order, however many
  arrive at once, only the first 5 per login (50 per IP) reach argon2.
- The first attempt over a limit starts a block of that key. While a key is blocked
  every login through it answers 429 `Too many login attempts` with `Retry-After`, and
  the password is not even checked: a blocked attacker learns nothing, right password
  or not, and costs us no argon2 work. A block clears its key's count, so after it a
  new block takes a full set of new failures.
- Each new block of the same key lasts `login_block_growth` times longer than the one
  before (60 s, 120 s, 240 s ... by default), capped at `login_block_max_seconds`. The
  level is remembered for `login_block_memory` (24 h) after the key's last block.
- A success clears the login's count, so an owner's earlier typos are forgiven. It
  keeps the login's block level: the level measures pressure on the account over the
  last day, and resetting it on every owner login would hand the attacker short blocks
  again on exactly the accounts in use. From the IP's count it takes back only its own
  attempt, or one account of the attacker's own would reset their IP between guesses
  at other people's.
- Nothing here reads the account, and the check runs before the database is asked, so
  an unknown login is throttled exactly like a known one: the answers never tell
  whether a login exists.

The lock-out trade-off. Anyone can block a login with 5 wrong passwords, from anywhere,
and for everyone, so a per-login block is a denial of service waiting to happen. We
accept it but keep it small: the first block is short (a minute), the growth is capped
(an hour), so a victim is locked out at most that long after the attacker stops; an
attacker who keeps a victim locked out must keep spending attempts, which count against
their own IP (its blocks grow independently of the victims'). The cap also bounds the
guessing rate of a patient attacker to about 5 guesses per hour per account. What this
cannot stop is a botnet locking an account out indefinitely; exempting a device that
logged in before (a signed device cookie, OWASP "device cookies") would, and is left for
later: an IP-based exemption would tell people behind the owner's NAT that the login
exists.

Redis down: counted per process. The cache (Redis) is an accelerator, not the source of
truth: when it is unreachable the counts go on in this process's memory
(`LocalFallbackCache`, logged once), so logins go on and the limits still hold per
instance. Failing closed would turn a cache outage into a login outage for every user;
skipping the throttle (as before issue 11) let guessing go unlimited.
"""

from __future__ import annotations

import logging
import math
from typing import Literal
from urllib.parse import quote

from agora.adapters.cache_local_fallback import LocalFallbackCache
from agora.core.audit import Audit
from agora.core.errors import TooManyRequests
from agora.core.settings import Settings
from agora.ports.cache import Cache

log = logging.getLogger("agora.auth.throttle")

TOO_MANY_ATTEMPTS = "Too many login attempts"

Scope = Literal["login", "ip"]


def login_subject(login: str) -> str:
    """The login's part of a key: case-folded like the account lookup, and quoted so a
    login holding `:` or spaces cannot be mistaken for another key."""
    return quote(login.casefold(), safe="")


class LoginThrottle:
    def __init__(self, cache: Cache, audit: Audit, settings: Settings) -> None:
        # Redis down: counted in this process (logged once) rather than not at all.
        self._cache = LocalFallbackCache(cache, "login throttle")
        self._audit = audit
        self._prefix = settings.key_prefix
        self._limits: dict[Scope, int] = {
            "login": settings.login_max_failures,
            "ip": settings.login_ip_max_failures,
        }
        self._window = settings.login_failure_window
        self._first_block = settings.login_block_seconds
        self._growth = settings.login_block_growth
        self._max_block = settings.login_block_max_seconds
        self._level_memory = settings.login_block_memory

    def key(self, kind: str, scope: Scope, subject: str) -> str:
        """`<prefix>login-fail:login:alice`, `<prefix>login-block:ip:203.0.113.9`, ...

        Kinds: `login-fail` (attempts in the window), `login-ok` (the IP's successes in
        the same window), `login-block` (the block; its TTL is what is left of it),
        `login-block-level` (how many blocks in a row).
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
        refusal = await self._refusal(login, ip)
        if refusal is None:
            return
        scope, left = refusal
        retry_after = max(1, math.ceil(left))
        await self._audit.record(
            "auth.login_throttled", login=login[:64], ip=ip, retry_after=retry_after, scope=scope
        )
        raise TooManyRequests(TOO_MANY_ATTEMPTS, retry_after)

    async def succeeded(self, login: str, ip: str | None) -> None:
        """The right password: forgive the login's attempts, take this one back from the
        IP's count (see the module's docstring)."""
        await self._cache.delete(self.key("login-fail", "login", login_subject(login)))
        if ip:
            left = await self._cache.ttl(self.key("login-fail", "ip", ip))
            if left is not None:  # else the window is over and nothing is owed
                # Dies with the window it belongs to, so it is never carried over.
                successes = self.key("login-ok", "ip", ip)
                await self._cache.incr(successes, left)
                await self._cache.expire(successes, left)

    async def _refusal(self, login: str, ip: str | None) -> tuple[Scope, float] | None:
        """The scope that refuses this attempt and the seconds left of its block."""
        subjects = self._subjects(login, ip)
        blocked = []
        for scope, subject in subjects:
            left = await self._cache.ttl(self.key("login-block", scope, subject))
            if left is not None:
                blocked.append((left, scope))
        if blocked:
            left, scope = max(blocked)  # the client has to wait for the longer one
            return scope, left
        for scope, subject in subjects:
            if await self._count_attempt(scope, subject) > self._limits[scope]:
                return scope, await self._block(scope, subject, login, ip)
        return None

    async def _count_attempt(self, scope: Scope, subject: str) -> int:
        """The key's attempts in the window, this one included, less its successes."""
        attempts = await self._cache.incr(self.key("login-fail", scope, subject), self._window)
        if scope == "login":  # a success deletes the login's count instead
            return attempts
        successes = await self._cache.get(self.key("login-ok", scope, subject))
        return attempts - int(successes or 0)

    async def _block(self, scope: Scope, subject: str, login: str, ip: str | None) -> float:
        """Start the key's block, unless a simultaneous attempt just did; seconds left."""
        block_key = self.key("login-block", scope, subject)
        # Claimed with a placeholder TTL: of simultaneous attempts over the limit, only
        # one raises the level, which is known only once claimed.
        if not await self._cache.set_if_absent(block_key, b"0", self._first_block):
            return await self._cache.ttl(block_key) or self._first_block
        level_key = self.key("login-block-level", scope, subject)
        level = await self._cache.incr(level_key, self._level_memory)
        # incr sets the TTL only when it creates the key: remember from the last block.
        await self._cache.expire(level_key, self._level_memory)
        seconds = self.block_seconds(level)
        await self._cache.set(block_key, str(level).encode(), seconds)
        # An attempt that saw no block yet and counts only after this delete gets its
        # password checked, but it is counted against the next budget: no extra guess.
        await self._cache.delete(
            self.key("login-fail", scope, subject), self.key("login-ok", scope, subject)
        )
        await self._audit.record(
            "auth.login_blocked",
            login=login[:64],
            ip=ip,
            scope=scope,
            level=level,
            seconds=seconds,
        )
        return seconds

    def _subjects(self, login: str, ip: str | None) -> list[tuple[Scope, str]]:
        subjects: list[tuple[Scope, str]] = [("login", login_subject(login))]
        if ip:  # no client address (some test transports): only the login counts
            subjects.append(("ip", ip))
        return subjects
