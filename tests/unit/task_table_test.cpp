#include "core/tables/task_table.hpp"

#include <gtest/gtest.h>

#include <map>
#include <random>

using namespace mcpproxy;
using std::chrono::milliseconds;

namespace {
TaskRecord on(int ordinal, milliseconds ttl = milliseconds(60000)) {
  TaskRecord r;
  r.ordinal = ordinal;
  r.ttl = ttl;
  return r;
}
const clock::time_point t0 = clock::now();
}  // namespace

TEST(TaskRecordCodec, RoundTripsAndRefusesOthers) {
  TaskRecord r = on(2, milliseconds(1500));
  r.principal = "p";
  const auto back = decode_task_record(encode_task_record(r));
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, r);
  EXPECT_FALSE(decode_task_record("{}"));
  EXPECT_FALSE(decode_task_record(R"({"v":2,"ordinal":0,"ttl":1})"));
  EXPECT_FALSE(decode_task_record(R"({"v":1,"ordinal":-1,"ttl":1})"));
  EXPECT_FALSE(decode_task_record(R"({"v":1,"ordinal":0,"ttl":0})"));
  EXPECT_FALSE(decode_task_record(R"({"v":1,"ordinal":99999,"ttl":5})"));
  EXPECT_FALSE(decode_task_record("not json"));
}

TEST(TaskTable, FindsWhatWasInsertedUntilItExpires) {
  TaskTable t(100, 1 << 20, TableRole::store);
  EXPECT_EQ(t.insert("task:a", on(1, milliseconds(1000)), t0), TaskInsert::inserted);
  auto found = t.find("task:a", t0 + milliseconds(999));
  ASSERT_TRUE(found);
  EXPECT_EQ(found->ordinal, 1);
  // Slid on use: 999 ms + 1000 ms.
  EXPECT_TRUE(t.find("task:a", t0 + milliseconds(1998)));
  EXPECT_FALSE(t.find("task:a", t0 + milliseconds(3000)));
  EXPECT_EQ(t.size(), 0U);
  EXPECT_EQ(t.bytes(), 0U);
}

TEST(TaskTable, RefreshOfTheStoreAtMostEveryTenthOfTheTtl) {
  TaskTable t(100, 1 << 20, TableRole::cache);
  t.insert("task:a", on(0, milliseconds(1000)), t0);
  bool refresh = true;
  t.find("task:a", t0 + milliseconds(50), &refresh);
  EXPECT_FALSE(refresh);
  t.find("task:a", t0 + milliseconds(150), &refresh);
  EXPECT_TRUE(refresh);
  t.find("task:a", t0 + milliseconds(200), &refresh);
  EXPECT_FALSE(refresh);
}

TEST(TaskTable, AKeyIsThePodsThatCreatedItFirst) {
  TaskTable t(100, 1 << 20, TableRole::store);
  ASSERT_EQ(t.insert("task:a", on(1), t0), TaskInsert::inserted);
  TaskRecord holder;
  EXPECT_EQ(t.insert("task:a", on(2), t0, &holder), TaskInsert::taken);
  EXPECT_EQ(holder.ordinal, 1);
  EXPECT_EQ(t.find("task:a", t0)->ordinal, 1);
  EXPECT_EQ(t.insert("task:a", on(1), t0), TaskInsert::same);
  EXPECT_EQ(t.size(), 1U);
  // An expired key is free again.
  EXPECT_EQ(t.insert("task:a", on(2), t0 + milliseconds(120000)), TaskInsert::inserted);
  EXPECT_EQ(t.find("task:a", t0 + milliseconds(120000))->ordinal, 2);
}

TEST(TaskTable, StoreRoleNeverDropsALiveKey) {
  TaskTable t(4, 1 << 20, TableRole::store);
  for (int i = 0; i < 4; ++i) ASSERT_EQ(t.insert("task:" + std::to_string(i), on(0), t0), TaskInsert::inserted);
  // A flood of new ids finds the table full; the live keys all stay.
  for (int i = 4; i < 1000; ++i) EXPECT_EQ(t.insert("task:" + std::to_string(i), on(0), t0), TaskInsert::full);
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(t.find("task:" + std::to_string(i), t0));
  EXPECT_EQ(t.size(), 4U);
  // Expired ones make room.
  EXPECT_EQ(t.insert("task:new", on(0), t0 + milliseconds(61000)), TaskInsert::inserted);
}

TEST(TaskTable, BytesBoundHolds) {
  TaskTable t(1000000, 4096, TableRole::store);
  int in = 0;
  for (int i = 0; i < 1000; ++i) {
    if (t.insert("task:" + std::string(100, 'x') + std::to_string(i), on(0), t0) == TaskInsert::inserted) ++in;
  }
  EXPECT_GT(in, 0);
  EXPECT_LT(in, 1000);
  EXPECT_LE(t.bytes(), 4096U);
}

TEST(TaskTable, CacheRoleDropsAnyKeyForANewOne) {
  TaskTable t(8, 1 << 20, TableRole::cache);
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(t.insert("task:" + std::to_string(i), on(0), t0), TaskInsert::inserted);
    EXPECT_LE(t.size(), 8U);
  }
  EXPECT_TRUE(t.find("task:99", t0));
  EXPECT_GT(t.evicted(), 0U);
  t.cache("task:x", on(3), t0);
  EXPECT_EQ(t.find("task:x", t0)->ordinal, 3);
}

TEST(TaskTable, AgreesWithAMapUnderChurn) {
  TaskTable t(1000000, 1 << 30, TableRole::store);
  std::map<std::string, std::pair<int, clock::time_point>> model;
  std::mt19937 rng(7);
  clock::time_point now = t0;
  for (int step = 0; step < 20000; ++step) {
    now += milliseconds(rng() % 5);
    const std::string key = "task:" + std::to_string(rng() % 300);
    const int ordinal = static_cast<int>(rng() % 3);
    const auto it = model.find(key);
    const bool live = it != model.end() && it->second.second > now;
    switch (rng() % 3) {
      case 0: {
        const TaskInsert r = t.insert(key, on(ordinal, milliseconds(200)), now);
        if (live && it->second.first != ordinal) {
          EXPECT_EQ(r, TaskInsert::taken);
        } else {
          EXPECT_NE(r, TaskInsert::taken);
          model[key] = {ordinal, now + milliseconds(200)};
        }
        break;
      }
      case 1: {
        const auto f = t.find(key, now);
        EXPECT_EQ(f.has_value(), live) << key;
        if (f && live) {
          EXPECT_EQ(f->ordinal, it->second.first);
          it->second.second = now + milliseconds(200);
        }
        break;
      }
      default:
        if (rng() % 10 == 0) t.sweep(now);
        break;
    }
  }
}
