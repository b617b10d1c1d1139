"""Data the methods feed beside nnU-Net's labeled loader: named streams and extra training transforms."""
