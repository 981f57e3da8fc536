"""``python -m resnet_deploy.cli``: the same CLI as the ``resnet-deploy`` command."""

from . import main

main()
