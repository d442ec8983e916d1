// Pearson's chi-square goodness-of-fit test, for tests that check sampling distributions.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <vector>

namespace orchard::testing {

// Regularized upper incomplete gamma Q(a, x) (Numerical Recipes, 3rd ed., 6.2: series for
// x < a + 1, continued fraction otherwise).
inline double gamma_q(double a, double x) {
  if (x <= 0) return 1.0;
  const double gln = std::lgamma(a);
  if (x < a + 1) {
    double ap = a, sum = 1.0 / a, del = sum;
    for (int n = 0; n < 10000; ++n) {
      ap += 1;
      del *= x / ap;
      sum += del;
      if (std::fabs(del) < std::fabs(sum) * 1e-15) break;
    }
    return 1.0 - sum * std::exp(-x + a * std::log(x) - gln);
  }
  const double tiny = 1e-300;
  double b = x + 1 - a, c = 1 / tiny, d = 1 / b, h = d;
  for (int i = 1; i < 10000; ++i) {
    double an = -i * (i - a);
    b += 2;
    d = an * d + b;
    if (std::fabs(d) < tiny) d = tiny;
    c = b + an / c;
    if (std::fabs(c) < tiny) c = tiny;
    d = 1 / d;
    double del = d * c;
    h *= del;
    if (std::fabs(del - 1) < 1e-15) break;
  }
  return std::exp(-x + a * std::log(x) - gln) * h;
}

// P(X >= statistic) for X ~ chi-square with `df` degrees of freedom.
inline double chi_square_sf(double statistic, double df) { return gamma_q(df / 2, statistic / 2); }

struct ChiSquareResult {
  double statistic = 0;
  double df = 0;
  double p_value = 1;
};

// Observed counts against expected probabilities (summing to 1). Categories with an expected
// count below 5 are pooled into one, as the test's approximation requires.
inline ChiSquareResult chi_square_test(const std::vector<uint64_t>& observed, const std::vector<double>& probabilities) {
  if (observed.size() != probabilities.size()) throw std::invalid_argument("chi_square_test: size mismatch");
  double total = 0;
  for (auto o : observed) total += static_cast<double>(o);
  ChiSquareResult r;
  double pooled_obs = 0, pooled_exp = 0;
  size_t cells = 0;
  for (size_t i = 0; i < observed.size(); ++i) {
    double e = probabilities[i] * total;
    if (e < 5) {
      pooled_obs += static_cast<double>(observed[i]);
      pooled_exp += e;
      continue;
    }
    double d = static_cast<double>(observed[i]) - e;
    r.statistic += d * d / e;
    ++cells;
  }
  if (pooled_exp > 0) {
    double d = pooled_obs - pooled_exp;
    r.statistic += d * d / pooled_exp;
    ++cells;
  }
  r.df = cells > 1 ? static_cast<double>(cells - 1) : 1.0;
  r.p_value = chi_square_sf(r.statistic, r.df);
  return r;
}

}  // namespace orchard::testing
