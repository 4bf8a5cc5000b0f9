"""Who is calling: a signed JWT whose `sub` is the user id and whose `tenant` claim is the user's
tenant (a token without one is the default tenant's). HS256 with a shared secret, or ES256 with the
issuer's public key; `exp` is required, so a leaked token stops working."""

from __future__ import annotations

import time
from dataclasses import dataclass

import jwt
from starlette.requests import Request

from kernel.requests import DEFAULT_TENANT, tenant_problem, user_key

LEEWAY_S = 30  # clocks of the token issuer and the gateway drift a little


class AuthError(Exception):
    """The token is missing, forged, expired or names no user; `str()` says which, for the client."""


@dataclass(frozen=True)
class User:
    """A user is (tenant, user id): every query, channel and record of the gateway takes both."""

    tenant: str
    id: str

    @property
    def key(self) -> str:
        return user_key(self.tenant, self.id)


@dataclass(frozen=True)
class TokenVerifier:
    key: str  # the HS256 secret or the ES256 public key (PEM)
    algorithm: str = "HS256"
    audience: str | None = None

    def user_of(self, token: str | None) -> User:
        if not token:
            raise AuthError("missing token")
        try:
            claims = jwt.decode(token, self.key, algorithms=[self.algorithm], audience=self.audience,
                                leeway=LEEWAY_S, options={"require": ["exp", "sub"]})
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired") from None
        except jwt.InvalidTokenError as exc:
            raise AuthError(f"invalid token: {exc}") from None
        if not isinstance(claims["sub"], str) or not claims["sub"]:
            raise AuthError("token names no user")
        tenant = claims.get("tenant", DEFAULT_TENANT)
        if reason := tenant_problem(tenant):
            raise AuthError(f"the token's {reason}")
        return User(tenant, claims["sub"])

    def user_of_request(self, request: Request) -> User:
        """The user of a bearer token, or else of ?token= (an EventSource cannot set headers)."""
        header = request.headers.get("authorization", "")
        token = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else None
        return self.user_of(token or request.query_params.get("token"))


def issue_token(user_id: str, key: str, algorithm: str = "HS256", ttl_s: int = 3600, **claims) -> str:
    """A token for `user_id` (for the demo and tests; production tokens come from the product's login);
    `tenant=` adds the tenant claim."""
    now = int(time.time())
    return jwt.encode({"sub": user_id, "iat": now, "exp": now + ttl_s, **claims}, key, algorithm=algorithm)
