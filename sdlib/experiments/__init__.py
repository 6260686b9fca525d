"""The data and protocols of the chapters' experiments: the paper's toy problem (``examples``), the
real-data comparison (``realdata``) and the Fashion-MNIST problem at scale (``kernel_scale``)."""
