"""Who a request comes from: bearer credentials verified into an Identity.

oidc.py verifies an identity provider's JWTs against its JWKS. The worker and the pool router
decide what an identity may do; this package only says who it is, or why not.
"""
