# Copyright the discovery-nova authors.
# Licensed under the Apache License, Version 2.0.
import setuptools

setuptools.setup(setup_requires=['pbr>=6.0.0'], pbr=True)
