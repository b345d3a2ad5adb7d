// emu_microbench.cpp: times two kernels on the host emulator, for comparing emulator designs
// (benches/README.md, "Emulator"): conv3x3_forward (GEMM tiles: block barriers, wmma) and
// norm_relu_pool_forward (block sums: warp shuffles, barriers). It also checks the conv output
// against a double-precision direct convolution and prints checksums, so two emulators can be
// seen to compute the same thing. Build against the emulator under test (first -I wins):
//
//   g++ -std=c++20 -O2 -pthread -DDDR_HOST_EMU -Icuda tools/emu_microbench.cpp -o /tmp/mb
//   git show 7c6efa6:cuda/host_emu.h > /tmp/old/host_emu.h     # the one-block-at-a-time emulator
//   g++ -std=c++20 -O2 -pthread -DDDR_HOST_EMU -I/tmp/old -Icuda tools/emu_microbench.cpp -o /tmp/mb_old
//   /tmp/mb [REPEATS=3] [NORM_GRID=2]
#include "host_emu.h"
#include "conv.cu"
#include "norm.cu"
#include "selftest.cu"
#include <chrono>
#include <random>
int main(int argc, char** argv) {
  unsigned S = 2, B = 16, cin = 16, cout = 32, H = 16, W = 16;
  std::vector<float> x((size_t)S * B * cin * H * W), prm((size_t)S * (cout * cin * 9 + cout)), y((size_t)S * B * cout * H * W);
  std::mt19937 g(1); std::uniform_real_distribution<float> u(-1, 1);
  for (auto& v : x) v = u(g); for (auto& v : prm) v = u(g);
  ConvParams cp{}; cp.x = x.data(); cp.params = prm.data(); cp.out = y.data(); cp.param_row = cout * cin * 9 + cout;
  cp.w_off = 0; cp.b_off = cout * cin * 9; cp.students = S; cp.batch = B; cp.cin = cin; cp.cout = cout; cp.h = H; cp.w = W;
  cp.oh = H; cp.ow = W; cp.pad = 1; cp.split_tf32 = 1;
  unsigned grid[3] = {(B * H * W + 63) / 64, (cout + 63) / 64, S}, block[3] = {128, 1, 1};
  auto t0 = std::chrono::steady_clock::now();
  int reps = argc > 1 ? atoi(argv[1]) : 3;
  for (int r = 0; r < reps; ++r) emu_conv3x3_forward(grid, block, &cp);
  auto t1 = std::chrono::steady_clock::now();
  double chk = 0; for (auto v : y) chk += v;
  // reference check of a few outputs
  double maxerr = 0;
  for (unsigned s = 0; s < S; ++s) for (unsigned b = 0; b < B; b += 5) for (unsigned co = 0; co < cout; co += 7) for (unsigned yy = 0; yy < H; yy += 3) for (unsigned xx = 0; xx < W; xx += 3) {
    double acc = prm[s * cp.param_row + cp.b_off + co];
    for (unsigned ci = 0; ci < cin; ++ci) for (int ky = 0; ky < 3; ++ky) for (int kx = 0; kx < 3; ++kx) {
      int iy = yy + ky - 1, ix = xx + kx - 1; if (iy < 0 || ix < 0 || iy >= (int)H || ix >= (int)W) continue;
      acc += (double)x[(((size_t)s * B + b) * cin + ci) * H * W + iy * W + ix] * prm[s * cp.param_row + ((co * cin + ci) * 9 + ky * 3 + kx)];
    }
    maxerr = std::max(maxerr, std::abs(acc - y[(((size_t)s * B + b) * cout + co) * H * W + yy * W + xx]));
  }
  // norm: instance norm over (S, B, cout) groups, grid 2
  std::vector<float> nprm((size_t)S * 2 * cout, 1.0f), stats((size_t)S * B * cout * 2), out((size_t)S * B * cout * H * W / 4);
  NormParams np{}; np.y = y.data(); np.params = nprm.data(); np.stats = stats.data(); np.out = out.data();
  np.param_row = 2 * cout; np.w_off = 0; np.b_off = cout; np.students = S; np.batch = B; np.c = cout; np.h = H; np.w = W;
  np.ph = H / 2; np.pw = W / 2; np.kind = 0; np.train = 1; np.eps = 1e-5f;
  unsigned ngrid[3] = {(unsigned)(argc > 2 ? atoi(argv[2]) : 2), 1, 1};
  auto t2 = std::chrono::steady_clock::now();
  for (int r = 0; r < reps; ++r) emu_norm_relu_pool_forward(ngrid, block, &np);
  auto t3 = std::chrono::steady_clock::now();
  double nchk = 0; for (auto v : out) nchk += v;
  printf("conv: %.1f ms/launch (%u blocks) max|err| %.2e chk %.6f | norm: %.1f ms/launch (%u groups, grid %u) chk %.6f\n",
         std::chrono::duration<double, std::milli>(t1 - t0).count() / reps, grid[0] * grid[1] * grid[2], maxerr, chk,
         std::chrono::duration<double, std::milli>(t3 - t2).count() / reps, S * B * cout, ngrid[0], nchk);
}
