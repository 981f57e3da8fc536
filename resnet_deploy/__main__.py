"""``python -m resnet_deploy``: the same CLI as the ``resnet-deploy`` command."""

from ._entry import main

main()
