// Parsing and printing of codec spec strings.
#include <charconv>
#include <sstream>
#include <cmath>
#include <string>
#include <system_error>

#include "gradwire/codec.hpp"
#include "gradwire/error.hpp"

namespace gradwire {

namespace {

constexpr const char* kNames =
    "none, fp16, bf16, q8, q4, q2, q1, sign, topk:<ratio>, topk:k=<count>, randk:<ratio>, "
    "threshold:<t>";

[[noreturn]] void bad(std::string_view spec, const std::string& what) {
  throw Error(ErrorCode::InvalidArgument,
              "codec spec '" + std::string(spec) + "': " + what);
}

double parse_number(std::string_view spec, std::string_view key, std::string_view text) {
  double v = 0.0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || !std::isfinite(v)) {
    bad(spec, "option '" + std::string(key) + "' needs a finite number, got '" +
                  std::string(text) + "'");
  }
  return v;
}

std::uint64_t parse_count(std::string_view spec, std::string_view key, std::string_view text) {
  std::uint64_t v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size()) {
    bad(spec, "option '" + std::string(key) + "' needs a non-negative integer, got '" +
                  std::string(text) + "'");
  }
  return v;
}

// The options each codec accepts, for the error message.
const char* options_of(CodecKind k) {
  switch (k) {
    case CodecKind::Quantize:
      return "bucket=<multiple of 64>, round=stochastic|nearest, scale=minmax|absmax";
    case CodecKind::Sign: return "bucket=<multiple of 64>, outliers=<0..127>";
    case CodecKind::TopK: return "<ratio>, ratio=<r>, k=<count>, index=u32|delta, value=f32|f16";
    case CodecKind::RandK: return "<ratio>, ratio=<r>, value=f32|f16";
    case CodecKind::Threshold: return "<t>, t=<t>, index=u32|delta, value=f32|f16";
    default: return "no options";
  }
}

std::string number_text(double v) {
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

}  // namespace

bool CodecSpec::sparse() const noexcept {
  return kind == CodecKind::TopK || kind == CodecKind::RandK || kind == CodecKind::Threshold;
}

CodecSpec parse_codec(std::string_view spec) {
  const std::size_t colon = spec.find(':');
  const std::string_view name = spec.substr(0, colon);
  CodecSpec s;
  if (name == "none") {
    s.kind = CodecKind::None;
  } else if (name == "fp16") {
    s.kind = CodecKind::Fp16;
    s.bits = 16;
  } else if (name == "bf16") {
    s.kind = CodecKind::Bf16;
    s.bits = 16;
  } else if (name == "q8" || name == "q4" || name == "q2" || name == "q1") {
    s.kind = CodecKind::Quantize;
    s.bits = static_cast<std::uint32_t>(name[1] - '0');
  } else if (name == "sign") {
    s.kind = CodecKind::Sign;
    s.bits = 1;
  } else if (name == "topk") {
    s.kind = CodecKind::TopK;
  } else if (name == "randk") {
    s.kind = CodecKind::RandK;
  } else if (name == "threshold") {
    s.kind = CodecKind::Threshold;
  } else {
    bad(spec, "unknown codec '" + std::string(name) + "'; accepted: " + kNames);
  }
  bool have_amount = false;  // ratio, k or threshold given
  if (colon != std::string_view::npos) {
    std::string_view rest = spec.substr(colon + 1);
    bool first = true;
    while (true) {
      const std::size_t comma = rest.find(',');
      const std::string_view tok = rest.substr(0, comma);
      const std::size_t eq = tok.find('=');
      const std::string_view key = tok.substr(0, eq);
      const std::string_view val = eq == std::string_view::npos ? std::string_view{} : tok.substr(eq + 1);
      const bool bare = eq == std::string_view::npos;
      const bool ok_for = [&] {
        switch (s.kind) {
          case CodecKind::Quantize: return key == "bucket" || key == "round" || key == "scale";
          case CodecKind::Sign: return key == "bucket" || key == "outliers";
          case CodecKind::TopK:
            return key == "ratio" || key == "k" || key == "index" || key == "value";
          case CodecKind::RandK: return key == "ratio" || key == "value";
          case CodecKind::Threshold: return key == "t" || key == "index" || key == "value";
          default: return false;
        }
      }();
      if (bare && first && s.sparse()) {
        const double v = parse_number(spec, s.kind == CodecKind::Threshold ? "t" : "ratio", tok);
        if (s.kind == CodecKind::Threshold) {
          s.threshold = static_cast<float>(v);
        } else {
          s.ratio = v;
        }
        have_amount = true;
      } else if (bare || !ok_for) {
        bad(spec, "unknown option '" + std::string(tok) + "' for " + std::string(name) +
                      "; accepted: " + options_of(s.kind));
      } else if (key == "outliers") {
        const std::uint64_t o = parse_count(spec, key, val);
        if (o > 127) bad(spec, "outliers=" + std::string(val) + " must be in [0, 127]");
        s.outliers = static_cast<std::uint32_t>(o);
      } else if (key == "bucket") {
        const std::uint64_t b = parse_count(spec, key, val);
        if (b < 64 || b > (1u << 24) || b % 64 != 0) {
          bad(spec, "bucket=" + std::string(val) + " must be a multiple of 64 in [64, 2^24]");
        }
        s.bucket = static_cast<std::uint32_t>(b);
      } else if (key == "round") {
        if (val == "stochastic") {
          s.round = Rounding::Stochastic;
        } else if (val == "nearest") {
          s.round = Rounding::Nearest;
        } else {
          bad(spec, "round=" + std::string(val) + "; accepted: stochastic, nearest");
        }
      } else if (key == "scale") {
        if (val == "minmax") {
          s.scale = ScaleMode::MinMax;
        } else if (val == "absmax") {
          s.scale = ScaleMode::AbsMax;
        } else {
          bad(spec, "scale=" + std::string(val) + "; accepted: minmax, absmax");
        }
      } else if (key == "ratio") {
        s.ratio = parse_number(spec, key, val);
        s.k = 0;
        have_amount = true;
      } else if (key == "k") {
        s.k = parse_count(spec, key, val);
        if (s.k == 0) bad(spec, "k must be at least 1");
        s.ratio = 0.0;
        have_amount = true;
      } else if (key == "t") {
        s.threshold = static_cast<float>(parse_number(spec, key, val));
        have_amount = true;
      } else if (key == "index") {
        if (val == "u32") {
          s.index = IndexCoding::U32;
        } else if (val == "delta") {
          s.index = IndexCoding::Delta;
        } else {
          bad(spec, "index=" + std::string(val) + "; accepted: u32, delta");
        }
      } else if (key == "value") {
        if (val == "f32") {
          s.value = ValueType::F32;
        } else if (val == "f16") {
          s.value = ValueType::F16;
        } else {
          bad(spec, "value=" + std::string(val) + "; accepted: f32, f16");
        }
      }
      first = false;
      if (comma == std::string_view::npos) break;
      rest = rest.substr(comma + 1);
    }
  }
  if (s.sparse()) {
    if (!have_amount) {
      bad(spec, std::string(name) + " needs " +
                    (s.kind == CodecKind::Threshold ? "a threshold, e.g. threshold:1e-3"
                                                    : "a ratio, e.g. " + std::string(name) + ":0.01"));
    }
    if (s.kind != CodecKind::Threshold && s.k == 0 && !(s.ratio > 0.0 && s.ratio <= 1.0)) {
      bad(spec, "ratio " + number_text(s.ratio) + " must be in (0, 1]");
    }
    if (s.kind == CodecKind::Threshold && !(s.threshold >= 0.0f && std::isfinite(s.threshold))) {
      bad(spec, "threshold must be finite and >= 0");
    }
    s.bits = s.value == ValueType::F16 ? 16 : 32;
  }
  return s;
}

std::string CodecSpec::to_string() const {
  // A stream, not chains of std::string +: GCC 12 at -O3 warns falsely (-Wrestrict) on those.
  std::ostringstream r;
  const char* idx = index == IndexCoding::Delta ? ",index=delta" : ",index=u32";
  const char* vals = value == ValueType::F16 ? ",value=f16" : ",value=f32";
  switch (kind) {
    case CodecKind::None: r << "none"; break;
    case CodecKind::Fp16: r << "fp16"; break;
    case CodecKind::Bf16: r << "bf16"; break;
    case CodecKind::Quantize:
      r << 'q' << bits << ":bucket=" << bucket
        << (round == Rounding::Nearest ? ",round=nearest" : ",round=stochastic")
        << (scale == ScaleMode::AbsMax ? ",scale=absmax" : ",scale=minmax");
      break;
    case CodecKind::Sign:
      r << "sign:bucket=" << bucket;
      if (outliers) r << ",outliers=" << outliers;
      break;
    case CodecKind::TopK:
      if (k != 0) {
        r << "topk:k=" << k;
      } else {
        r << "topk:ratio=" << number_text(ratio);
      }
      r << idx << vals;
      break;
    case CodecKind::RandK: r << "randk:ratio=" << number_text(ratio) << vals; break;
    case CodecKind::Threshold:
      r << "threshold:t=" << number_text(static_cast<double>(threshold)) << idx << vals;
      break;
  }
  return r.str();
}

}  // namespace gradwire
