"""Pure numpy image operations: degradations of the benchmark protocol, colour conversions,
MATLAB-compatible resizing, PSNR/SSIM and blind estimation of the noise level. No file I/O,
no torch."""
