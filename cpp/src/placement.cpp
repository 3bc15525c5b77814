// Crop placement: the "mass" rule of python/gazecrop/crop.py (its module docstring is the specification) for
// the largest box of each aspect ratio, the product path of gazecrop.crop.choose_crops with its default
// options (the Python code stays the reference, and runs the options this does not: zoom, keep, boost,
// margin, the other strategies).
//
// The largest box spans the image on at least one axis, so every search is one-dimensional: the mass of a box
// is a difference of one prefix sum over the pixel columns (or rows) of the bilinearly upsampled density.
// Every number is computed with the same double expressions in the same order as crop.py (its _row_sum,
// _col_sum, _lerp, cumsum), and this file is built with -ffp-contract=off (CMakeLists.txt), so the boxes,
// scores, peaks and cut measures equal the reference's bit for bit (tests/test_native_placement.py).
//
// Cost: O(grid cells x image side) for the profiles and prefix sums, O(positions) per box size and ranked
// candidate; about 0.1 ms for four aspects of a 1024x768 photo with a 24x32 grid.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "gazecrop/gazecrop.h"

namespace gazecrop {
namespace {

constexpr double kTieTolerance = 1e-6;  // crop.TIE_TOLERANCE
constexpr double kObjectLevel = 0.5;    // crop.OBJECT_LEVEL
constexpr double kDistinctIou = 0.5;    // crop.DISTINCT_IOU
constexpr double kCloseShared = 0.5;    // crop.CLOSE_SHARED
constexpr double kDistinctShift = 0.1;  // crop.DISTINCT_SHIFT
constexpr double kHeadYield = 0.98;     // crop.HEAD_YIELD
constexpr int kMaxPeaks = 5;            // choose_crops' _peaks(dens, 5, 0.1, 0.1 * max(W, H))
constexpr double kPeakStrength = 0.1;
constexpr double kPeakRadius = 0.1;
constexpr int kMaxSide = 1 << 20;
constexpr long long kMaxCells = 1LL << 22;
constexpr long long kMaxWork = 1LL << 32;  // width x grid rows + height x grid columns (the profiles' cost)

// crop._upsample_index: bilinear interpolation of a grid axis at the pixel centres, built for the first half
// and mirrored for the rest.
struct AxisIndex {
  std::vector<int> i0, i1;
  std::vector<double> w0, w1;
};

AxisIndex upsample_index(int n_image, int n_grid) {
  AxisIndex a;
  a.i0.resize(n_image);
  a.i1.resize(n_image);
  a.w0.resize(n_image);
  a.w1.resize(n_image);
  const int half = (n_image + 1) / 2;
  const double scale = double(n_grid) / double(n_image);
  for (int i = 0; i < half; ++i) {
    double s = (double(i) + 0.5) * scale - 0.5;
    s = std::min(std::max(s, 0.0), double(n_grid - 1));
    const int j = int(std::floor(s));
    a.i0[i] = j;
    a.i1[i] = std::min(j + 1, n_grid - 1);
    a.w1[i] = s - double(j);
    a.w0[i] = 1.0 - a.w1[i];
  }
  const int rest = n_image - half;
  for (int k = 0; k < rest; ++k) {
    const int src = rest - 1 - k;
    a.i0[half + k] = n_grid - 1 - a.i1[src];
    a.i1[half + k] = n_grid - 1 - a.i0[src];
    a.w0[half + k] = a.w1[src];
    a.w1[half + k] = a.w0[src];
  }
  return a;
}

// crop._axis_weights: each cell's interpolation weight summed over the axis' pixels (two bincounts, added).
std::vector<double> axis_weights(const AxisIndex& a, int n_grid) {
  std::vector<double> b0(n_grid, 0.0), b1(n_grid, 0.0);
  for (std::size_t i = 0; i < a.i0.size(); ++i) b0[a.i0[i]] += a.w0[i];
  for (std::size_t i = 0; i < a.i1.size(); ++i) b1[a.i1[i]] += a.w1[i];
  for (int c = 0; c < n_grid; ++c) b0[c] += b1[c];
  return b0;
}

// One grid density (or its mirror image) with its full-axis prefix sums (crop._Density).
struct Grid {
  int h, w;
  std::vector<double> d;  // (h, w)

  double at(int r, int c) const { return d[std::size_t(r) * w + c]; }

  // crop._row_sum: (w,) sum over rows of weights[r] * d[r, :], rows added in order.
  std::vector<double> row_sum(const std::vector<double>& weights) const {
    std::vector<double> v(w);
    for (int c = 0; c < w; ++c) v[c] = weights[0] * at(0, c);
    for (int r = 1; r < h; ++r)
      for (int c = 0; c < w; ++c) v[c] = v[c] + weights[r] * at(r, c);
    return v;
  }

  // crop._col_sum: (h,) sum over columns of d[:, c] * weights[c], columns added in order.
  std::vector<double> col_sum(const std::vector<double>& weights) const {
    std::vector<double> v(h);
    for (int r = 0; r < h; ++r) {
      double acc = at(r, 0) * weights[0];
      for (int c = 1; c < w; ++c) acc = acc + at(r, c) * weights[c];
      v[r] = acc;
    }
    return v;
  }
};

// The pixel masses of a grid vector interpolated along one axis, as prefix sums with a leading 0 (crop's
// _Density.prefix for the full band: np.concatenate([[0.0], np.cumsum(_lerp(v, index, 0))])).
std::vector<double> pixel_prefix(const std::vector<double>& v, const AxisIndex& a) {
  const std::size_t n = a.i0.size();
  std::vector<double> p(n + 1);
  p[0] = 0.0;
  double acc = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    const double u = v[a.i0[i]] * a.w0[i] + v[a.i1[i]] * a.w1[i];
    acc = i == 0 ? u : acc + u;
    p[i + 1] = acc;
  }
  return p;
}

// max over i < n of a[i] * w0 + b[i] * w1 (crop._lerp_rows_max for one pixel): four running maxima, so the
// products of neighbouring i overlap (the maximum of the same values, so the same bits).
double lerp_max(const double* a, const double* b, double w0, double w1, int n) {
  constexpr double lowest = -std::numeric_limits<double>::infinity();
  double m0 = lowest, m1 = lowest, m2 = lowest, m3 = lowest;
  int i = 0;
  for (; i + 4 <= n; i += 4) {
    m0 = std::max(m0, a[i] * w0 + b[i] * w1);
    m1 = std::max(m1, a[i + 1] * w0 + b[i + 1] * w1);
    m2 = std::max(m2, a[i + 2] * w0 + b[i + 2] * w1);
    m3 = std::max(m3, a[i + 3] * w0 + b[i + 3] * w1);
  }
  for (; i < n; ++i) m0 = std::max(m0, a[i] * w0 + b[i] * w1);
  return std::max(std::max(m0, m1), std::max(m2, m3));
}

struct Range {
  int lo, hi;  // inclusive
};

// crop._run: the run around the profile's maximum where it stays >= OBJECT_LEVEL of that maximum.
Range object_run(const std::vector<double>& profile) {
  const int n = int(profile.size());
  double top = profile[0];
  for (double v : profile) top = std::max(top, v);
  const double tied_level = top * (1 - 1e-12);
  int i = -1;
  double best = 0.0;
  for (int k = 0; k < n; ++k) {
    if (!(profile[k] >= tied_level)) continue;
    const double dist = std::abs(double(k) + 0.5 - double(n) / 2);
    if (i < 0 || dist < best) i = k, best = dist;
  }
  const double level = kObjectLevel * top;
  int lo = 0, hi = n - 1;
  for (int k = i - 1; k >= 0; --k)
    if (profile[k] < level) {
      lo = k + 1;
      break;
    }
  for (int k = i + 1; k < n; ++k)
    if (profile[k] < level) {
      hi = k - 1;
      break;
    }
  return {lo, hi};
}

class Placer {
 public:
  Placer(const double* density, int gh, int gw, int width, int height, const PlacementOptions& opt)
      : W_(width), H_(height), opt_(opt) {
    g_.h = m_.h = gh;
    g_.w = m_.w = gw;
    g_.d.assign(density, density + std::size_t(gh) * gw);
    m_.d.resize(g_.d.size());
    for (int r = 0; r < gh; ++r)
      for (int c = 0; c < gw; ++c) m_.d[std::size_t(r) * gw + c] = g_.at(r, gw - 1 - c);
    iy_ = upsample_index(H_, gh);
    ix_ = upsample_index(W_, gw);
    full_y_ = axis_weights(iy_, gh);
    full_x_ = axis_weights(ix_, gw);
    total_ = raw_total(g_);
    total_m_ = raw_total(m_);
    if (!(total_ > 0.0))  // the same words as crop.NO_PIXEL_MASS
      throw std::invalid_argument("log_density has no mass at the image's pixels (every cell they interpolate is -inf)");
    profiles_and_object();
  }

  Placement run(const std::vector<std::array<int, 2>>& sizes) {
    Placement out;
    const auto cell = grid_cell();
    std::tie(out.point_x, out.point_y) = to_pixel(cell[0], cell[1]);
    out.peaks = peaks(cell);
    for (const auto& s : sizes) out.boxes.push_back(place(s[0], s[1]));
    return out;
  }

 private:
  // crop._Density._raw_total: rows then columns, in order.
  double raw_total(const Grid& g) const {
    const std::vector<double> v = g.row_sum(full_y_);
    double acc = v[0] * full_x_[0];
    for (int c = 1; c < g.w; ++c) acc = acc + v[c] * full_x_[c];
    return acc;
  }

  // crop._Density.profiles / object_box / focus.
  void profiles_and_object() {
    std::vector<double> cols(W_), rows(H_);
    std::vector<double> t(g_.d.size());  // the grid transposed: a grid column's cells contiguous
    for (int r = 0; r < g_.h; ++r)
      for (int c = 0; c < g_.w; ++c) t[std::size_t(c) * g_.h + r] = g_.at(r, c);
    for (int x = 0; x < W_; ++x)
      cols[x] = lerp_max(&t[std::size_t(ix_.i0[x]) * g_.h], &t[std::size_t(ix_.i1[x]) * g_.h], ix_.w0[x], ix_.w1[x],
                         g_.h);
    for (int y = 0; y < H_; ++y)
      rows[y] = lerp_max(&g_.d[std::size_t(iy_.i0[y]) * g_.w], &g_.d[std::size_t(iy_.i1[y]) * g_.w], iy_.w0[y],
                         iy_.w1[y], g_.w);
    ox_ = object_run(cols);
    oy_ = object_run(rows);
    fx_ = double(ox_.lo + ox_.hi + 1) / 2;
    fy_ = double(oy_.lo + oy_.hi + 1) / 2;
  }

  // crop._Density.cell: (row, col) of the grid maximum, near-ties to the cell nearest the grid centre; a flat
  // grid gives the (fractional) centre.
  std::array<double, 2> grid_cell() const {
    const int h = g_.h, w = g_.w;
    const double cr = double(h - 1) / 2, cc = double(w - 1) / 2;
    bool all = true;
    int br = -1, bc = -1;
    double best = 0.0;
    for (int r = 0; r < h; ++r)
      for (int c = 0; c < w; ++c) {
        if (!(g_.at(r, c) >= 1.0 - 1e-6)) {
          all = false;
          continue;
        }
        const double dr = double(r) - cr, dc = double(c) - cc;
        const double dist = dr * dr + dc * dc;
        if (br < 0 || dist < best) br = r, bc = c, best = dist;
      }
    if (all) return {cr, cc};
    return {double(br), double(bc)};
  }

  // crop._Density.to_pixel.
  std::pair<int, int> to_pixel(double row, double col) const {
    const double fx = std::floor((col + 0.5) * (double(W_) / g_.w) - 0.5 + 0.5);
    const double fy = std::floor((row + 0.5) * (double(H_) / g_.h) - 0.5 + 0.5);
    const int x = int(std::min(std::max(fx, 0.0), double(W_ - 1)));
    const int y = int(std::min(std::max(fy, 0.0), double(H_ - 1)));
    return {x, y};
  }

  // crop._peaks with choose_crops' arguments (5 peaks, strength 0.1, radius 0.1 of the long side).
  std::vector<SalientPeak> peaks(const std::array<double, 2>& first) const {
    const int h = g_.h, w = g_.w;
    struct Cand {
      double v;
      int r, c;
    };
    std::vector<Cand> found;
    for (int r = 0; r < h; ++r)
      for (int c = 0; c < w; ++c) {
        const double v = g_.at(r, c);
        bool is_max = v >= kPeakStrength;
        double lowest = std::numeric_limits<double>::infinity();
        for (int dy = -1; dy <= 1; ++dy)
          for (int dx = -1; dx <= 1; ++dx) {
            if (!dy && !dx) continue;
            const int rr = r + dy, cc = c + dx;
            if (rr < 0 || rr >= h || cc < 0 || cc >= w) continue;  // -inf for the maximum, +inf for the lowest
            const double n = g_.at(rr, cc);
            is_max = is_max && v >= n;
            lowest = std::min(lowest, n);
          }
        if (is_max && v > lowest) found.push_back({v, r, c});
      }
    std::stable_sort(found.begin(), found.end(), [](const Cand& a, const Cand& b) {
      return std::make_tuple(-a.v, a.r, a.c) < std::make_tuple(-b.v, b.r, b.c);
    });
    std::vector<std::array<double, 2>> cand{first};
    for (const Cand& f : found)
      if (!(double(f.r) == first[0] && double(f.c) == first[1])) cand.push_back({double(f.r), double(f.c)});
    const double radius = kPeakRadius * double(std::max(W_, H_));
    const double r2 = radius * radius;
    struct Kept {
      double r, c, x, y;
    };
    std::vector<Kept> kept;
    std::vector<std::pair<int, int>> pixels;
    for (const auto& rc : cand) {
      const double x = (rc[1] + 0.5) * (double(W_) / w) - 0.5;  // crop.grid_to_image
      const double y = (rc[0] + 0.5) * (double(H_) / h) - 0.5;
      const auto px = to_pixel(rc[0], rc[1]);
      if (std::find(pixels.begin(), pixels.end(), px) != pixels.end()) continue;
      bool apart = true;
      for (const Kept& k : kept) apart = apart && (x - k.x) * (x - k.x) + (y - k.y) * (y - k.y) >= r2;
      if (!apart) continue;
      kept.push_back({rc[0], rc[1], x, y});
      pixels.push_back(px);
      if (int(kept.size()) >= kMaxPeaks) break;
    }
    std::vector<SalientPeak> out;
    for (const Kept& k : kept) {
      const auto px = to_pixel(k.r, k.c);
      const double s = g_.at(int(std::nearbyint(k.r)), int(std::nearbyint(k.c)));  // Python's round: half to even
      out.push_back({px.first, px.second, s});
    }
    return out;
  }

  // One box size: crop._Search with the full 1-D set of positions, then crop._Search.candidates and crop._cut.
  BoxPlacement place(int bw, int bh) {
    const int nt = H_ - bh + 1, nl = W_ - bw + 1;
    const bool one_row = nt == 1;  // crop._Density.mass: a band of rows when there is one top
    const int n = one_row ? nl : nt;
    // The prefix sums of the map and of its mirror image along the searched axis (shared by all sizes).
    const std::vector<double>& p = prefix(one_row, false);
    const std::vector<double>& q = prefix(one_row, true);
    std::vector<double> J(n);
    std::vector<int> T(n), L(n);
    for (int k = 0; k < n; ++k) {
      T[k] = one_row ? 0 : k;
      L[k] = one_row ? k : 0;
      double a, b;
      if (one_row) {
        a = (p[k + bw] - p[k]) / total_;
        const int ml = W_ - bw - k;
        b = (q[ml + bw] - q[ml]) / total_m_;
      } else {
        a = (p[k + bh] - p[k]) / total_;
        b = (q[k + bh] - q[k]) / total_m_;
      }
      J[k] = 0.5 * (a + b);
    }
    std::vector<char> allowed(n, 1), chosen;
    const bool fits = ox_.hi - ox_.lo + 1 <= bw && oy_.hi - oy_.lo + 1 <= bh;
    chosen = allowed;
    if (opt_.object_rule && fits) {
      std::vector<char> whole(n);
      bool any_whole = false;
      for (int k = 0; k < n; ++k) {
        const int l = L[k], t = T[k];
        whole[k] = l <= ox_.lo && l + bw - 1 >= ox_.hi && t <= oy_.lo && t + bh - 1 >= oy_.hi;
        const bool overlap = l <= ox_.hi && l + bw - 1 >= ox_.lo && t <= oy_.hi && t + bh - 1 >= oy_.lo;
        allowed[k] = !overlap || whole[k];
        any_whole = any_whole || whole[k];
      }
      chosen = allowed;
      if (any_whole) {
        const double m_in = masked_max(J, whole), m_all = masked_max(J, allowed);
        if (m_all <= (1.0 + opt_.object_yield) * m_in) chosen = whole;
      }
    }
    if (!opt_.heads.empty()) {
      const std::vector<char> safe = head_safe(J, chosen, T, L, bw, bh);
      for (int k = 0; k < n; ++k) {
        chosen[k] = chosen[k] && safe[k];
        allowed[k] = allowed[k] && safe[k];
      }
    }
    std::vector<double> d_focus(n), d_centre(n);
    for (int k = 0; k < n; ++k) {
      const double cx = double(L[k]) + double(bw) / 2, cy = double(T[k]) + double(bh) / 2;
      d_focus[k] = (cx - fx_) * (cx - fx_) + (cy - fy_) * (cy - fy_);
      d_centre[k] = (cx - double(W_) / 2) * (cx - double(W_) / 2) + (cy - double(H_) / 2) * (cy - double(H_) / 2);
    }
    auto best_of = [&](const std::vector<char>& mask) {
      const double mx = masked_max(J, mask);
      int pick = -1;
      for (int k = 0; k < n; ++k) {
        if (!mask[k] || !(J[k] >= mx - kTieTolerance)) continue;
        if (pick < 0 || std::make_tuple(d_focus[k], d_centre[k], L[k], T[k]) <
                            std::make_tuple(d_focus[pick], d_centre[pick], L[pick], T[pick]))
          pick = k;
      }
      return pick;
    };
    BoxPlacement out;
    const int first = best_of(chosen);
    if (first < 0) throw std::logic_error("gazecrop placement: no position left (a bug)");
    out.ranked.push_back({L[first], T[first], J[first]});
    // crop._Search.candidates / _distinct: the pool shrinks by the positions not distinct from each pick.
    const int k_max = std::max(2, opt_.candidates);
    std::vector<char> pool = allowed;
    auto drop_near = [&](int pick) {
      const int bl = L[pick], bt = T[pick], br = bl + bw, bb = bt + bh;
      for (int k = 0; k < n; ++k) {
        if (!pool[k]) continue;
        const int l = L[k], t = T[k];
        const int r0 = std::max(t, bt), c0 = std::max(l, bl);
        const int r1 = std::max(r0, std::min(t + bh, bb)), c1 = std::max(c0, std::min(l + bw, br));
        double shared;
        if (one_row)
          shared = 0.5 * ((p[c1] - p[c0]) / total_ + (q[W_ - c0] - q[W_ - c1]) / total_m_);
        else
          shared = 0.5 * ((p[r1] - p[r0]) / total_ + (q[r1] - q[r0]) / total_m_);
        const bool apart = std::abs(l - bl) >= kDistinctShift * W_ || std::abs(t - bt) >= kDistinctShift * H_;
        const long long ow = std::max(0, std::min(l + bw, br) - std::max(l, bl));
        const long long oh = std::max(0, std::min(t + bh, bb) - std::max(t, bt));
        const long long inter = ow * oh;
        const double iou = double(inter) / (2.0 * bw * bh - double(inter));
        pool[k] = iou < kDistinctIou && shared < kCloseShared * J[k] && apart;
      }
    };
    drop_near(first);
    while (int(out.ranked.size()) < k_max) {
      const int pick = best_of(pool);
      if (pick < 0) break;
      out.ranked.push_back({L[pick], T[pick], J[pick]});
      drop_near(pick);
    }
    out.cut = cut(L[first], T[first], bw, bh);
    return out;
  }

  static double masked_max(const std::vector<double>& J, const std::vector<char>& mask) {
    double mx = -std::numeric_limits<double>::infinity();
    for (std::size_t k = 0; k < J.size(); ++k)
      if (mask[k]) mx = std::max(mx, J[k]);
    return mx;
  }

  // crop._head_safe.
  std::vector<char> head_safe(const std::vector<double>& J, const std::vector<char>& chosen, const std::vector<int>& T,
                              const std::vector<int>& L, int bw, int bh) const {
    const std::size_t n = J.size();
    bool any = false;
    for (char c : chosen) any = any || c;
    if (!any) return std::vector<char>(n, 1);  // (the rule always leaves positions; Python would raise here)
    const double best = masked_max(J, chosen);
    auto ok = [&](const std::vector<char>& mask) {
      double mx = -std::numeric_limits<double>::infinity();
      bool found = false;
      for (std::size_t k = 0; k < n; ++k)
        if (chosen[k] && mask[k]) found = true, mx = std::max(mx, J[k]);
      return found && mx >= kHeadYield * best;
    };
    std::vector<std::pair<long long, std::vector<char>>> spared;
    for (const auto& hd : opt_.heads) {
      const int hl = hd[0], ht = hd[1], hr = hd[2], hb = hd[3];
      if (hr - hl > bw || hb - ht > bh) continue;
      std::vector<char> safe(n);
      for (std::size_t k = 0; k < n; ++k) {
        const int l = L[k], t = T[k];
        const bool overlap = l < hr && l + bw > hl && t < hb && t + bh > ht;
        const bool whole = l <= hl && l + bw >= hr && t <= ht && t + bh >= hb;
        safe[k] = !overlap || whole;
      }
      if (ok(safe)) spared.emplace_back((long long)(hr - hl) * (hb - ht), std::move(safe));
    }
    std::vector<long long> areas;
    for (const auto& s : spared) areas.push_back(s.first);
    std::sort(areas.begin(), areas.end());
    areas.erase(std::unique(areas.begin(), areas.end()), areas.end());
    for (long long area : areas) {
      std::vector<char> safe(n, 1);
      for (const auto& s : spared)
        if (s.first >= area)
          for (std::size_t k = 0; k < n; ++k) safe[k] = safe[k] && s.second[k];
      if (ok(safe)) return safe;
    }
    return std::vector<char>(n, 1);
  }

  // crop._cut: the highest density on the box's inner edges, relative to the maximum.
  double cut(int left, int top, int bw, int bh) const {
    const int right = left + bw, bottom = top + bh;
    double best = 0.0;
    std::vector<int> xs, ys;
    if (left > 0) xs.push_back(left);
    if (right < W_) xs.push_back(right - 1);
    if (top > 0) ys.push_back(top);
    if (bottom < H_) ys.push_back(bottom - 1);
    std::vector<double> v;
    for (int x : xs) {  // the grid column at pixel column x, interpolated over the box's rows
      v.resize(g_.h);
      for (int r = 0; r < g_.h; ++r) v[r] = g_.at(r, ix_.i0[x]) * ix_.w0[x] + g_.at(r, ix_.i1[x]) * ix_.w1[x];
      double mx = -std::numeric_limits<double>::infinity();
      for (int y = top; y < bottom; ++y) mx = std::max(mx, v[iy_.i0[y]] * iy_.w0[y] + v[iy_.i1[y]] * iy_.w1[y]);
      best = std::max(best, mx);
    }
    for (int y : ys) {
      v.resize(g_.w);
      for (int c = 0; c < g_.w; ++c) v[c] = g_.at(iy_.i0[y], c) * iy_.w0[y] + g_.at(iy_.i1[y], c) * iy_.w1[y];
      double mx = -std::numeric_limits<double>::infinity();
      for (int x = left; x < right; ++x) mx = std::max(mx, v[ix_.i0[x]] * ix_.w0[x] + v[ix_.i1[x]] * ix_.w1[x]);
      best = std::max(best, mx);
    }
    return std::min(1.0, best);
  }

  // Full-band prefix sums along the searched axis: pixel columns (one_row) or rows, of the map or its mirror.
  const std::vector<double>& prefix(bool one_row, bool mirror) {
    std::vector<double>& slot = prefix_[one_row][mirror];
    if (slot.empty()) {
      const Grid& g = mirror ? m_ : g_;
      slot = one_row ? pixel_prefix(g.row_sum(full_y_), ix_) : pixel_prefix(g.col_sum(full_x_), iy_);
    }
    return slot;
  }

  int W_, H_;
  const PlacementOptions& opt_;
  Grid g_, m_;
  AxisIndex iy_, ix_;
  std::vector<double> full_y_, full_x_;
  double total_ = 0, total_m_ = 0;
  Range ox_{}, oy_{};
  double fx_ = 0, fy_ = 0;
  std::vector<double> prefix_[2][2];
};

void check_arguments(int grid_h, int grid_w, int width, int height, const std::vector<std::array<int, 2>>& sizes,
                     const PlacementOptions& opt) {
  if (grid_h < 1 || grid_w < 1 || (long long)grid_h * grid_w > kMaxCells)
    throw std::invalid_argument("placement: grid " + std::to_string(grid_h) + "x" + std::to_string(grid_w) +
                                " must have 1 to 2^22 cells");
  if (width < 1 || height < 1 || width > kMaxSide || height > kMaxSide)
    throw std::invalid_argument("placement: image size " + std::to_string(width) + "x" + std::to_string(height) +
                                " must be 1 to 2^20 pixels a side");
  if ((long long)width * grid_h + (long long)height * grid_w > kMaxWork)
    throw std::invalid_argument("placement: a " + std::to_string(grid_h) + "x" + std::to_string(grid_w) +
                                " grid on a " + std::to_string(width) + "x" + std::to_string(height) +
                                " image is too much work (width x grid rows + height x grid columns over 2^32)");
  for (const auto& s : sizes) {
    if (s[0] < 1 || s[1] < 1 || s[0] > width || s[1] > height || (s[0] != width && s[1] != height))
      throw std::invalid_argument("placement: box " + std::to_string(s[0]) + "x" + std::to_string(s[1]) +
                                  " is not the largest box of an aspect ratio in the " + std::to_string(width) +
                                  "x" + std::to_string(height) + " image");
  }
  for (const auto& hd : opt.heads)
    if (hd[0] < 0 || hd[1] < 0 || hd[2] <= hd[0] || hd[3] <= hd[1] || hd[2] > width || hd[3] > height)
      throw std::invalid_argument("placement: head (" + std::to_string(hd[0]) + ", " + std::to_string(hd[1]) + ", " +
                                  std::to_string(hd[2]) + ", " + std::to_string(hd[3]) +
                                  ") is not a non-empty rectangle inside the image");
  if (opt.candidates < 1) throw std::invalid_argument("placement: candidates must be >= 1");
  if (opt.object_rule && !(opt.object_yield >= 0.0))
    throw std::invalid_argument("placement: object_yield must be >= 0 (inf: never yield)");
}

}  // namespace

std::array<int, 2> largest_box_size(int width, int height, double aspect) {
  if (width < 1 || height < 1) throw std::invalid_argument("largest_box_size: the image size must be positive");
  if (!(aspect > 0.0) || !std::isfinite(aspect))
    throw std::invalid_argument("largest_box_size: the aspect ratio must be positive and finite");
  if (double(width) >= aspect * height) {
    const double side = std::nearbyint(height * aspect);
    return {int(std::max(1.0, std::min(double(width), side))), height};
  }
  const double side = std::nearbyint(width / aspect);
  return {width, int(std::max(1.0, std::min(double(height), side)))};
}

Placement place_crops(const double* density, int grid_h, int grid_w, int width, int height,
                      const std::vector<std::array<int, 2>>& box_sizes, const PlacementOptions& options) {
  check_arguments(grid_h, grid_w, width, height, box_sizes, options);
  const std::size_t cells = std::size_t(grid_h) * grid_w;
  double mx = 0.0;
  for (std::size_t i = 0; i < cells; ++i) {
    const double v = density[i];
    if (!(v >= 0.0) || !std::isfinite(v))
      throw std::invalid_argument("placement: the density must be finite and >= 0");
    mx = std::max(mx, v);
  }
  if (mx != 1.0) throw std::invalid_argument("placement: the density's maximum must be 1 (exp(log_density - max))");
  Placer placer(density, grid_h, grid_w, width, height, options);
  return placer.run(box_sizes);
}

Placement place_crops_log(const float* log_density, int grid_h, int grid_w, int width, int height,
                          const std::vector<std::array<int, 2>>& box_sizes, const PlacementOptions& options) {
  check_arguments(grid_h, grid_w, width, height, box_sizes, options);
  const std::size_t cells = std::size_t(grid_h) * grid_w;
  double mx = -std::numeric_limits<double>::infinity();
  for (std::size_t i = 0; i < cells; ++i) {
    const double v = log_density[i];
    if (std::isnan(v) || v == std::numeric_limits<double>::infinity())
      throw std::invalid_argument("placement: log_density contains NaN or +inf");
    mx = std::max(mx, v);
  }
  if (!std::isfinite(mx)) throw std::invalid_argument("placement: log_density is -inf everywhere (no mass)");
  std::vector<double> d(cells);
  for (std::size_t i = 0; i < cells; ++i) d[i] = std::exp(double(log_density[i]) - mx);
  return place_crops(d.data(), grid_h, grid_w, width, height, box_sizes, options);
}

}  // namespace gazecrop
