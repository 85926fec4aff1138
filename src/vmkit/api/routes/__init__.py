"""The API's routes, one module per resource. Each module's ``router(server, ...)`` returns
its APIRouter; a route only turns HTTP into a call of its resource's service and back."""
