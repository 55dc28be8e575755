"""Azure Functions app (Python v2 programming model): routes only.

Each handler turns the host's HttpRequest into a framework-free request, lets
``core.api.handle`` run the endpoint under a deadline with the JSON error
contract, and returns the result. All logic lives in ``core``. Importing this
module does no I/O and cannot fail on configuration: problems show in
``/api/health`` and in responses.
"""

import azure.functions as func

from core import api
from core.runtime import get_runtime

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


async def _serve(name: str, req: func.HttpRequest, endpoint: api.Endpoint) -> func.HttpResponse:
    request = api.Request.build(req.method, req.url, dict(req.headers), dict(req.params), req.get_body())
    res = await api.handle(name, request, get_runtime(), endpoint)
    return func.HttpResponse(body=res.body, status_code=res.status, headers=res.headers)


@app.route(route="search", methods=["GET", "POST"])
async def search(req: func.HttpRequest) -> func.HttpResponse:
    return await _serve("search", req, api.search_endpoint)


@app.route(route="ads", methods=["POST"])
async def ads(req: func.HttpRequest) -> func.HttpResponse:
    return await _serve("ads", req, api.ads_endpoint)


@app.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def health(req: func.HttpRequest) -> func.HttpResponse:
    return await _serve("health", req, api.health_endpoint)


@app.route(route="openapi.json", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def openapi(req: func.HttpRequest) -> func.HttpResponse:
    return await _serve("openapi", req, api.openapi_endpoint)
