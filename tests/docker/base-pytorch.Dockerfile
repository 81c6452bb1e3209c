# Test-only stand-in for pytorch/pytorch: the local python image plus torch and torchvision,
# installed from the host's wheelhouse, served on loopback (build with --network host), so
# the 2.9 GB of wheels never enter the build context or a layer.
ARG PYTHON_IMAGE=hpo-ci/python:3.11
FROM ${PYTHON_IMAGE}
ARG WHEELHOUSE_URL
ARG TORCH_VERSION=2.14.1
ARG TORCHVISION_VERSION=0.29.1
RUN pip install --no-cache-dir --no-index --find-links "${WHEELHOUSE_URL}" \
        "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}" \
 && python -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
