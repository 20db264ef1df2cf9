// The session binding's keys and principals: rotation without loss (every key of the file
// verifies, the first signs), and a record made under a key this proxy lacks told apart from
// another identity's.
#include "core/identity/session_binding.hpp"

#include <gtest/gtest.h>

#include <stdexcept>

#include "core/tables/session.hpp"

using namespace mcpproxy;

namespace {
const std::string kOld = "old-key-0123456789abcdef";
const std::string kNew = "new-key-fedcba9876543210";
}  // namespace

TEST(BindingKeys, OneKeyALineTrimmedAndEmptyLinesSkipped) {
  const auto keys = parse_binding_keys(kNew + "\r\n\n" + kOld + "  \n");
  ASSERT_EQ(keys.size(), 2U);
  EXPECT_EQ(keys[0].secret, kNew);
  EXPECT_EQ(keys[1].secret, kOld);
  EXPECT_EQ(keys[0].id.size(), 8U);
  EXPECT_NE(keys[0].id, keys[1].id);
  EXPECT_EQ(keys[0].id, make_binding_key(kNew).id) << "an id depends on the key alone";
  EXPECT_EQ(keys[0].id.find(kNew.substr(0, 4)), std::string::npos);
}

TEST(BindingKeys, AShortLineOrNoKeyIsAnError) {
  EXPECT_THROW((void)parse_binding_keys(kNew + "\nshort\n"), std::invalid_argument);
  EXPECT_THROW((void)parse_binding_keys("\n\n"), std::invalid_argument);
  try {
    (void)parse_binding_keys(kNew + "\nshort\n");
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("line 2"), std::string::npos) << e.what();
  }
}

TEST(BindingKeys, EveryKeyVerifiesTheFirstSigns) {
  const auto before = parse_binding_keys(kOld);
  const auto adding = parse_binding_keys(kOld + "\n" + kNew);  // rollout 1: the new key second
  const auto moved = parse_binding_keys(kNew + "\n" + kOld);   // rollout 2: the new key first
  const auto after = parse_binding_keys(kNew);
  const std::string by_old = principal_of(before.front(), "Bearer alice");
  EXPECT_EQ(principal_of(adding.front(), "Bearer alice"), by_old) << "adding a key second changes no signature";
  const std::string by_new = principal_of(moved.front(), "Bearer alice");
  EXPECT_EQ(principal_key_id(by_new), make_binding_key(kNew).id);
  for (const auto* keys : {&adding, &moved}) {
    EXPECT_EQ(check_principal(*keys, "Bearer alice", by_old), PrincipalCheck::match);
    EXPECT_EQ(check_principal(*keys, "Bearer alice", by_new), PrincipalCheck::match);
    EXPECT_EQ(check_principal(*keys, "Bearer mallory", by_new), PrincipalCheck::other_identity);
  }
  EXPECT_EQ(check_principal(before, "Bearer alice", by_new), PrincipalCheck::unknown_key);
  EXPECT_EQ(check_principal(after, "Bearer alice", by_old), PrincipalCheck::unknown_key);
  EXPECT_EQ(check_principal(before, "Bearer alice", by_old), PrincipalCheck::match);
}

TEST(BindingKeys, APrincipalFromBeforeKeyIdsIsTriedUnderEveryKey) {
  const auto keys = parse_binding_keys(kNew + "\n" + kOld);
  const std::string legacy = principal_of(make_binding_key(kOld), "Bearer alice").substr(9);
  ASSERT_EQ(legacy.size(), 64U);
  EXPECT_EQ(principal_key_id(legacy), "");
  EXPECT_EQ(check_principal(keys, "Bearer alice", legacy), PrincipalCheck::match);
  EXPECT_EQ(check_principal(keys, "Bearer bob", legacy), PrincipalCheck::other_identity);
}

TEST(BindingKeys, TheRecordKeepsTheHmacWhereReplicasBeforeKeyIdsReadIt) {
  SessionRecord rec;
  rec.principal = principal_of(make_binding_key(kNew), "Bearer alice");
  const std::string text = encode_record(rec);
  EXPECT_NE(text.find("\"principal\":\"" + rec.principal.substr(9) + "\""), std::string::npos) << text;
  EXPECT_NE(text.find("\"principal_key\":\"" + make_binding_key(kNew).id + "\""), std::string::npos) << text;
  const auto back = decode_record(text);
  ASSERT_TRUE(back);
  EXPECT_EQ(back->principal, rec.principal);
}

TEST(BindingField, TwoCopiesOfTheIdentityFieldAreSeen) {
  SessionsConfig s;
  http1::Head head;
  head.fields = {{"Authorization", "Bearer a", http1::FieldId::authorization},
                 {"X-Forwarded-User", "alice", http1::FieldId::other},
                 {"x-forwarded-user", "mallory", http1::FieldId::other}};
  EXPECT_FALSE(binding_field_repeated(s, head)) << "binding off";
  s.binding = BindingKind::authorization;
  EXPECT_FALSE(binding_field_repeated(s, head));
  head.fields.push_back({"authorization", "Bearer b", http1::FieldId::authorization});
  EXPECT_TRUE(binding_field_repeated(s, head));
  s.binding = BindingKind::header;
  s.binding_header = "X-Forwarded-User";
  EXPECT_TRUE(binding_field_repeated(s, head));
  s.binding_header = "X-Other";
  EXPECT_FALSE(binding_field_repeated(s, head));
}

TEST(BindingKeys, ACallerMatchesItsOwnRecordsUnderEveryKeyAndNoIdentityNone) {
  const auto keys = parse_binding_keys(kNew + "\n" + kOld);
  const std::string mine_old = principal_of(make_binding_key(kOld), "Bearer alice");
  const std::string alice = principal_of(keys.front(), "Bearer alice");
  const BoundCaller caller{&keys, "Bearer alice", alice};
  EXPECT_EQ(check_caller(caller, alice), PrincipalCheck::match);
  EXPECT_EQ(check_caller(caller, mine_old), PrincipalCheck::match) << "the second key's";
  EXPECT_EQ(check_caller(caller, principal_of(keys.front(), "Bearer bob")), PrincipalCheck::other_identity);
  EXPECT_EQ(check_caller(caller, principal_of(make_binding_key("third-key-0123456789ab"), "Bearer alice")),
            PrincipalCheck::unknown_key);
  EXPECT_EQ(check_caller(BoundCaller{&keys, "", ""}, alice), PrincipalCheck::other_identity);
  EXPECT_EQ(check_caller(BoundCaller{&keys, "", ""}, ""), PrincipalCheck::match) << "a record from before binding";
  EXPECT_EQ(check_caller(BoundCaller{}, alice), PrincipalCheck::match) << "binding off";
}
