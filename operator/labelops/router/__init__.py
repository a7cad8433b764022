"""`labelops router`: a LabelerPool's one front door for its labelers.

A labeler signs in once (the pool's tokens or its OIDC issuer), claims, and gets the task of
whichever campaign the fair share picks (routing/fair_share.py); the router forwards to that
campaign's worker with its service token, naming the labeler in Labelops-Labeler, and hands
the task back with the id `<campaign>:<item id>` so submits and releases find their worker.

state.py decides (pure, unit-tested), identity.py signs labelers in, app.py is the aiohttp
server and its one keep-alive client session to the workers, main.py wires the environment.
"""
