#include <nlohmann/json.hpp>

#include "core/tables/session.hpp"

namespace mcpproxy {

std::string encode_record(const SessionRecord& rec) {
  nlohmann::json j = {
      {"v", SessionRecord::kVersion}, {"ordinal", rec.ordinal}, {"url", rec.url}, {"created", rec.created}};
  if (!rec.backend_session.empty()) j["backend_session"] = rec.backend_session;
  if (!rec.init.empty()) j["init"] = rec.init;
  if (!rec.init_target.empty()) j["init_target"] = rec.init_target;
  if (!rec.init_fields.empty()) j["init_fields"] = rec.init_fields;
  if (!rec.principal.empty()) {
    // "<key id>.<hmac>" is kept as two fields: a replica that predates key ids reads the
    // HMAC where it always did.
    const auto dot = rec.principal.find('.');
    if (dot == std::string::npos) {
      j["principal"] = rec.principal;
    } else {
      j["principal"] = rec.principal.substr(dot + 1);
      j["principal_key"] = rec.principal.substr(0, dot);
    }
  }
  if (rec.epoch != 0) j["epoch"] = rec.epoch;
  if (rec.init_not_kept) j["init_not_kept"] = true;
  return j.dump();
}

std::optional<SessionRecord> decode_record(std::string_view text) {
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return std::nullopt;
  const auto v = j.find("v");
  const auto ordinal = j.find("ordinal");
  if (v == j.end() || !v->is_number_integer() || *v != SessionRecord::kVersion) return std::nullopt;
  if (ordinal == j.end() || !ordinal->is_number_integer() || *ordinal < 0 || *ordinal >= kMaxReplicas) {
    return std::nullopt;
  }
  SessionRecord rec;
  rec.ordinal = ordinal->get<int>();
  auto str = [&j](const char* key, std::string& out) {
    const auto it = j.find(key);
    if (it != j.end() && it->is_string()) out = it->get<std::string>();
  };
  str("url", rec.url);
  str("backend_session", rec.backend_session);
  str("init", rec.init);
  str("init_target", rec.init_target);
  str("init_fields", rec.init_fields);
  str("principal", rec.principal);
  std::string key_id;
  str("principal_key", key_id);
  if (!rec.principal.empty() && !key_id.empty() && key_id.find('.') == std::string::npos) {
    rec.principal = key_id + "." + rec.principal;
  }
  const auto created = j.find("created");
  if (created != j.end() && created->is_number_integer()) rec.created = created->get<std::int64_t>();
  const auto epoch = j.find("epoch");
  if (epoch != j.end() && epoch->is_number_unsigned()) rec.epoch = epoch->get<std::uint64_t>();
  const auto not_kept = j.find("init_not_kept");
  rec.init_not_kept = not_kept != j.end() && not_kept->is_boolean() && not_kept->get<bool>();
  return rec;
}

}  // namespace mcpproxy
