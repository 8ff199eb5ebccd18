"""Who may do what on the page: viewers look, operators review, refit and roll back.

Users come from a JSON file (`--web-users`), never from the command line (a process list shows arguments):

    {"users": [{"name": "ana", "role": "operator", "token": "…"}, {"name": "line-tv", "role": "viewer", "token": "…"}]}

The rules:
- bound to loopback, viewing needs no token (the person at the line PC); beyond loopback it needs one, and the page
  refuses to start without a users file;
- reviewing, refitting and rolling back always need an operator's token: without a users file they are off;
- a token arrives as `Authorization: Bearer <token>` (Prometheus, scripts) or as the session cookie the login form
  sets (browsers); tokens are compared in constant time.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from edge_runtime.errors import SlsgError

VIEWER, OPERATOR = "viewer", "operator"
ROLES = (VIEWER, OPERATOR)
COOKIE = "slsg_session"
MIN_TOKEN = 16


class AccessError(SlsgError, ValueError):
    """A page that would be open to the network without a guard, or a users file that cannot be used."""


@dataclass(frozen=True)
class User:
    name: str
    role: str


@dataclass
class Access:
    """The page's users and whether anonymous viewing is allowed."""

    users: dict[str, User] = field(default_factory=dict)  # token → user
    open_viewing: bool = True

    @classmethod
    def for_page(cls, host: str, users_file: Optional[Path]) -> Access:
        users = read_users(users_file) if users_file is not None else {}
        loopback = is_loopback(host)
        if not loopback and not users:
            raise AccessError(f"the page would listen on {host}, beyond this machine, with no users: give "
                              "--web-users FILE (names, roles and tokens), or bind it to 127.0.0.1")
        return cls(users, open_viewing=loopback)

    def who(self, token: Optional[str]) -> Optional[User]:
        if not token:
            return None
        found = None
        for known, user in self.users.items():  # every comparison runs: no early exit to time
            if hmac.compare_digest(known.encode(), token.encode()):
                found = user
        return found

    def may(self, user: Optional[User], role: str) -> bool:
        if role == VIEWER:
            return self.open_viewing or user is not None
        return user is not None and user.role == OPERATOR

    def refusal(self, user: Optional[User], role: str) -> str:
        if role == VIEWER:
            return "this page needs a token: log in with one from the users file"
        if not any(u.role == OPERATOR for u in self.users.values()):
            return "no operator is configured: start the run with --web-users FILE naming one"
        if user is None:
            return "reviewing and refitting need an operator: log in with an operator's token"
        return f"{user.name} is a {user.role}; reviewing and refitting need an operator"


def is_loopback(host: str) -> bool:
    """`localhost` and loopback addresses; an empty host or 0.0.0.0 listens on every interface."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_users(path: Path) -> dict[str, User]:
    """Token → user from the users file, checked: roles known, names and tokens unique, tokens long enough."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        entries = data["users"]
    except FileNotFoundError:
        raise AccessError(f"users file {path} does not exist") from None
    except (ValueError, KeyError, TypeError) as e:
        raise AccessError(f"users file {path} is not a JSON object with a list of users, each with a name, a role and "
                          f"a token ({e})") from None
    users: dict[str, User] = {}
    names = set()
    for i, e in enumerate(entries):
        try:
            name, role, token = str(e["name"]), str(e["role"]), str(e["token"])
        except (KeyError, TypeError):
            raise AccessError(f"users file {path}: entry {i + 1} needs name, role and token") from None
        if role not in ROLES:
            raise AccessError(f"users file {path}: {name}'s role is {role!r}; use {' or '.join(ROLES)}")
        if len(token) < MIN_TOKEN:
            raise AccessError(f"users file {path}: {name}'s token is shorter than {MIN_TOKEN} characters; use a long "
                              "random one (python -c 'import secrets; print(secrets.token_urlsafe())')")
        if token in users or name in names:
            raise AccessError(f"users file {path}: {name} or its token appears twice")
        users[token] = User(name, role)
        names.add(name)
    return users
