"""The floor of the serving benchmark: a bare ASGI app that returns a constant JSON body.

Served by uvicorn with the same worker count as the API: what HTTP alone costs on this
machine, so the API's and MLflow's numbers can be read against the machine's limit.
"""

BODY = b'{"probability":0.1,"decision":"accept"}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    more = True
    while more:  # read the request body, as a real endpoint must
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})
