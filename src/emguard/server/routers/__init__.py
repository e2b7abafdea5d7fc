"""The API's routes, one router per resource: ``files``, ``jobs`` (fine-tuning jobs, their events and
checkpoints), ``models``. ``emguard.server.app.create_app`` includes them in this order."""
