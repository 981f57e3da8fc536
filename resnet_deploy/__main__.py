"""``python -m resnet_deploy``: the same CLI as the ``resnet-deploy`` command."""

from .cli import main

main()
