/* window.c: window partition and its inverse (CPU), gkavision spec 2.4. An image [B, H, W, C] is zero-padded
 * on the right and bottom to whole windows of w x w; window s = (b*nH + i)*nW + j holds, as token l = r*w +
 * c, the pixel (i*w + r, j*w + c). Each op is the other's backward (the reverse drops the padding). */
#include <string.h>

#include "ops_cpu.h"

void window_partition_cpu(float *out, const float *inp, int window, int B, int H, int W, int C) {
    int w = window, nH = (H + w - 1) / w, nW = (W + w - 1) / w;
    size_t pixel = (size_t)C * sizeof(float);
#pragma omp parallel for schedule(static)
    for (int64_t sr = 0; sr < (int64_t)B * nH * nW * w; sr++) { /* one row r of window s */
        int64_t s = sr / w;
        int r = (int)(sr % w), j = (int)(s % nW), i = (int)(s / nW % nH);
        int64_t b = s / ((int64_t)nW * nH);
        int y = i * w + r;
        float *dst = out + sr * w * C;
        for (int c = 0; c < w; c++) {
            int x = j * w + c;
            if (y < H && x < W)
                memcpy(dst + (int64_t)c * C, inp + ((b * H + y) * W + x) * C, pixel);
            else
                memset(dst + (int64_t)c * C, 0, pixel);
        }
    }
}

void window_reverse_cpu(float *out, const float *inp, int window, int B, int H, int W, int C) {
    int w = window, nH = (H + w - 1) / w, nW = (W + w - 1) / w;
    size_t pixel = (size_t)C * sizeof(float);
#pragma omp parallel for schedule(static)
    for (int64_t by = 0; by < (int64_t)B * H; by++) {
        int64_t b = by / H;
        int y = (int)(by % H);
        for (int x = 0; x < W; x++) {
            int64_t s = (b * nH + y / w) * nW + x / w;
            int l = (y % w) * w + x % w;
            memcpy(out + (by * W + x) * C, inp + (s * w * w + l) * C, pixel);
        }
    }
}
