// exp and erf over any path's vector type `V`; included inside each pass (foreach_isa.h), so no
// include guard.

// exp(x) as 2^n · p(r) with |r| ≤ ln2 / 2 and a degree-6 polynomial: within 2 ulp over the range
// that matters here; below about -87 it returns 0, which softmax wants for masked scores.
inline V::F vexp(V::F x) {
  const V::F ln2_hi = V::set1(0.693359375f), ln2_lo = V::set1(-2.12194440e-4f);
  x = V::max(V::min(x, V::set1(88.0f)), V::set1(-104.0f));
  const V::F n = V::round(V::mul(x, V::set1(1.44269504088896341f)));
  V::F r = V::fnmadd(n, ln2_hi, x);
  r = V::fnmadd(n, ln2_lo, r);
  V::F p = V::set1(1.0f / 720);
  for (float c : {1.0f / 120, 1.0f / 24, 1.0f / 6, 0.5f, 1.0f, 1.0f}) p = V::fmadd(p, r, V::set1(c));
  return V::scale2(p, n);
}

// erf(x) by Abramowitz & Stegun 7.1.26 (absolute error ≤ 1.5e-7): the formula libtorch's own
// vectorised GELU uses, so both decoder paths round alike.
inline V::F verf(V::F x) {
  const V::F one = V::set1(1.0f), ax = V::abs(x);
  const V::F t = V::div(one, V::fmadd(V::set1(0.3275911f), ax, one));
  V::F r = V::fmadd(V::set1(1.061405429f), t, V::set1(-1.453152027f));
  for (float c : {1.421413741f, -0.284496736f, 0.254829592f}) r = V::fmadd(r, t, V::set1(c));
  const V::F e = vexp(V::sub(V::zero(), V::mul(ax, ax)));
  return V::copysign(V::fnmadd(V::mul(r, t), e, one), x);
}
