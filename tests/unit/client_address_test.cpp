#include "core/http/client_address.hpp"

#include <gtest/gtest.h>

#include "core/config/config.hpp"
#include "core/http/http1.hpp"

using namespace mcpproxy;

namespace {

IpAddress ip(std::string_view text) {
  const auto a = parse_ip(text);
  EXPECT_TRUE(a) << text;
  return a.value_or(IpAddress{});
}

IpNetwork net(std::string_view text) {
  const auto n = parse_network(text);
  EXPECT_TRUE(n) << text;
  return n.value_or(IpNetwork{});
}

// The client of a request whose head carries `fields` (each "Name: value"), from `peer`.
std::string client_of(const std::string& fields, std::string_view peer, const TrustedHops& trusted) {
  static std::string bytes;  // the head's views point into it
  bytes = "POST /mcp HTTP/1.1\r\nHost: x\r\n" + fields + "Content-Length: 0\r\n\r\n";
  http1::Head head;
  EXPECT_EQ(http1::parse_request(bytes, 1 << 20, head), http1::Status::complete) << bytes;
  return client_address(head, ip(peer), trusted).str();
}

TrustedHops hops(unsigned count, std::vector<std::string_view> networks = {}) {
  TrustedHops t;
  t.count = count;
  for (auto n : networks) t.networks.push_back(net(n));
  return t;
}

}  // namespace

TEST(ClientAddress, AddressesAsForwardedForAndPeersNameThem) {
  EXPECT_EQ(ip("192.0.2.1").str(), "192.0.2.1");
  EXPECT_EQ(ip(" 192.0.2.1:4711\t").str(), "192.0.2.1") << "a port, spaces";
  EXPECT_EQ(ip("2001:DB8::1").str(), "2001:db8::1");
  EXPECT_EQ(ip("[2001:db8::1]").str(), "2001:db8::1");
  EXPECT_EQ(ip("[2001:db8::1]:443").str(), "2001:db8::1");
  EXPECT_EQ(ip("::ffff:192.0.2.1"), ip("192.0.2.1")) << "a dual-stack listener's IPv4 peer is the IPv4 address";
  EXPECT_TRUE(ip("192.0.2.1").is_v4());
  EXPECT_FALSE(ip("::1").is_v4());
  for (std::string_view garbage : {"", " ", "unknown", "_hidden", "localhost", "example.com", "1.2.3", "1.2.3.4.5",
                                   "256.1.1.1", "1.2.3.4:", "1.2.3.4:99x", "1.2.3.4:1234567", "[::1", "[::1]x",
                                   "[::1]:", "fe80::1%eth0", "::g", "1.2.3.4 5.6.7.8", "\"1.2.3.4\""}) {
    EXPECT_FALSE(parse_ip(garbage)) << "'" << garbage << "'";
  }
  EXPECT_FALSE(parse_ip(std::string(5000, '1'))) << "a long entry is not copied anywhere";
}

TEST(ClientAddress, NetworksMatchTheirAddressesOnly) {
  const IpNetwork ten = net("10.0.0.0/8");
  EXPECT_TRUE(ten.contains(ip("10.255.0.1")));
  EXPECT_FALSE(ten.contains(ip("11.0.0.1")));
  EXPECT_FALSE(ten.contains(ip("::a00:1"))) << "an IPv6 address is not in an IPv4 block";
  EXPECT_TRUE(ten.contains(ip("::ffff:10.1.2.3")));
  EXPECT_EQ(ten.str(), "10.0.0.0/8");
  EXPECT_EQ(net("10.1.2.3/8").str(), "10.0.0.0/8") << "the bits past the prefix are cleared";
  EXPECT_EQ(net("192.0.2.7").str(), "192.0.2.7/32");
  EXPECT_TRUE(net("192.0.2.7").contains(ip("192.0.2.7")));
  EXPECT_FALSE(net("192.0.2.7").contains(ip("192.0.2.8")));
  EXPECT_TRUE(net("172.16.0.0/12").contains(ip("172.31.255.255")));
  EXPECT_FALSE(net("172.16.0.0/12").contains(ip("172.32.0.0")));
  const IpNetwork doc = net("2001:db8::/32");
  EXPECT_TRUE(doc.contains(ip("2001:db8:ffff::1")));
  EXPECT_FALSE(doc.contains(ip("2001:db9::1")));
  EXPECT_EQ(doc.str(), "2001:db8::/32");
  EXPECT_TRUE(net("0.0.0.0/0").contains(ip("203.0.113.9")));
  EXPECT_TRUE(net("::ffff:10.0.0.0/104").contains(ip("10.9.9.9"))) << "an IPv4 block written as IPv6";
  EXPECT_TRUE(net("::/0").contains(ip("2001:db8::1")));
  for (std::string_view bad : {"", "/8", "10.0.0.0/", "10.0.0.0/33", "::/129", "10.0.0.0/-1", "10.0.0.0/8x", "x/8",
                               "10.0.0.0/8/8", "[::1]/128", "10.0.0.1:80"}) {
    EXPECT_FALSE(parse_network(bad)) << bad;
  }
}

TEST(ClientAddress, TheBlockAroundAnAddressKeepsItsPrefixOnly) {
  EXPECT_EQ(IpNetwork::around(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), 64).base.str(), "2001:db8:1:2::");
  EXPECT_EQ(IpNetwork::around(ip("2001:db8:1:2:aaaa::1"), 64), IpNetwork::around(ip("2001:db8:1:2:ffff::9"), 64))
      << "two hosts of one /64 are one block";
  EXPECT_NE(IpNetwork::around(ip("2001:db8:1:2::1"), 64), IpNetwork::around(ip("2001:db8:1:3::1"), 64));
  EXPECT_EQ(IpNetwork::around(ip("2001:db8::1"), 128).base, ip("2001:db8::1")) << "128: the address alone";
  EXPECT_EQ(IpNetwork::around(ip("2001:db8::1"), 500).prefix, 128U);
  EXPECT_EQ(IpNetwork::around(ip("2001:db8:abcd::1"), 33).str(), "2001:db8:8000::/33");
}

TEST(ClientAddress, WithoutATrustedHopThePeerIsTheClient) {
  EXPECT_EQ(client_of("X-Forwarded-For: 198.51.100.1\r\n", "192.0.2.1", hops(0)), "192.0.2.1");
  EXPECT_EQ(client_of("X-Forwarded-For: 198.51.100.1\r\n", "192.0.2.1", hops(0, {"10.0.0.0/8"})), "192.0.2.1")
      << "a peer outside trusted_proxies: its X-Forwarded-For is not read";
}

TEST(ClientAddress, TheAddressTheTrustedHopAppendedNotWhatTheClientWrote) {
  // The ingress (the peer) appended what it saw; the client wrote the rest.
  const std::string forged = "X-Forwarded-For: 6.6.6.6, 7.7.7.7, 203.0.113.7\r\n";
  EXPECT_EQ(client_of(forged, "10.0.0.2", hops(1)), "203.0.113.7");
  EXPECT_EQ(client_of(forged, "10.0.0.2", hops(2)), "7.7.7.7") << "two trusted hops: the farther appended 7.7.7.7";
  EXPECT_EQ(client_of("", "10.0.0.2", hops(1)), "10.0.0.2") << "nothing appended: the hop itself";
  // Several fields are one list, in order (RFC 9110 5.3).
  const std::string fields = "X-Forwarded-For: 6.6.6.6\r\nX-Custom: y\r\nx-forwarded-for: 203.0.113.7\r\n";
  EXPECT_EQ(client_of(fields, "10.0.0.2", hops(1)), "203.0.113.7");
  EXPECT_EQ(client_of(fields, "10.0.0.2", hops(2)), "6.6.6.6");
  // Spaces, tabs, empty elements and ports, IPv6.
  EXPECT_EQ(client_of("X-Forwarded-For: 6.6.6.6 ,\t, 203.0.113.7:5123 , \r\n", "10.0.0.2", hops(1)), "203.0.113.7");
  EXPECT_EQ(client_of("X-Forwarded-For: 6.6.6.6, [2001:db8::7]:4711\r\n", "2001:db8::2", hops(1)), "2001:db8::7");
  EXPECT_EQ(client_of("X-Forwarded-For: 2001:db8::7\r\n", "::ffff:10.0.0.2", hops(0, {"10.0.0.0/8"})), "2001:db8::7");
}

TEST(ClientAddress, GarbageAndShortListsNeverYieldAClientWrittenValue) {
  // A trusted hop appends an address; garbage where the walk reads next was not written by
  // one: the walk ends at the last trusted hop, which is then the client.
  EXPECT_EQ(client_of("X-Forwarded-For: unknown\r\n", "10.0.0.2", hops(1)), "10.0.0.2");
  EXPECT_EQ(client_of("X-Forwarded-For: 6.6.6.6, garbage, 203.0.113.7\r\n", "10.0.0.2", hops(2)), "203.0.113.7");
  EXPECT_EQ(client_of("X-Forwarded-For: 203.0.113.7, \r\n", "10.0.0.2", hops(1)), "203.0.113.7");
  // Fewer entries than trusted hops (a request that came in at the nearer hop): the
  // left-most, which a trusted hop wrote.
  EXPECT_EQ(client_of("X-Forwarded-For: 203.0.113.7\r\n", "10.0.0.2", hops(3)), "203.0.113.7");
}

TEST(ClientAddress, TrustedProxiesAreWalkedFromTheRight) {
  const TrustedHops internal = hops(0, {"10.0.0.0/8", "2001:db8:1::/48"});
  EXPECT_EQ(client_of("X-Forwarded-For: 6.6.6.6, 203.0.113.7, 10.1.1.1\r\n", "10.0.0.2", internal), "203.0.113.7");
  EXPECT_EQ(client_of("X-Forwarded-For: 6.6.6.6, 203.0.113.7, 2001:db8:1::5\r\n", "10.0.0.2", internal), "203.0.113.7");
  EXPECT_EQ(client_of("X-Forwarded-For: 10.9.9.9, 10.1.1.1\r\n", "10.0.0.2", internal), "10.9.9.9")
      << "every hop trusted: the left-most";
  // A count and blocks together: the peer by count, then the blocks.
  EXPECT_EQ(client_of("X-Forwarded-For: 6.6.6.6, 203.0.113.7, 10.1.1.1\r\n", "192.0.2.1", hops(1, {"10.0.0.0/8"})),
            "203.0.113.7");
}

TEST(ClientAddress, AVeryLongListIsReadFromItsRightEndOnly) {
  std::string many = "X-Forwarded-For: 198.51.100.1";
  for (int i = 0; i < 1500; ++i) many += ", 10.0." + std::to_string(i / 250) + "." + std::to_string(i % 250);
  many += ", 203.0.113.7\r\n";
  EXPECT_EQ(client_of(many, "10.0.0.2", hops(1)), "203.0.113.7");
  EXPECT_EQ(client_of(many, "10.0.0.2", hops(3)), "10.0.5.248");
  // The client's own entries in a trusted block: still only what lies right of the first
  // untrusted address is walked.
  EXPECT_EQ(client_of(many, "10.0.0.2", hops(0, {"10.0.0.0/8"})), "203.0.113.7");
  std::string internal = "X-Forwarded-For: 198.51.100.1";
  for (int i = 0; i < 1500; ++i) internal += ", 10.0.0.1";
  EXPECT_EQ(client_of(internal + "\r\n", "10.0.0.2", hops(0, {"10.0.0.0/8"})), "198.51.100.1");
}

TEST(ClientAddress, TheConfigKeys) {
  const std::string backend = "backend: {url_template: 'http://127.0.0.1:1910{ordinal}'}\n";
  const Config c = config_from_yaml(
      backend +
          "client_address:\n  trusted_hops: 2\n  trusted_proxies: [10.0.0.0/8, '2001:db8::/32', 192.0.2.7]\n"
          "limits:\n  new_sessions_max_clients: 5000\n",
      "t.yaml");
  EXPECT_EQ(c.client_address.count, 2U);
  ASSERT_EQ(c.client_address.networks.size(), 3U);
  EXPECT_EQ(c.client_address.networks[1].str(), "2001:db8::/32");
  EXPECT_EQ(c.limits.new_sessions_max_clients, 5000U);
  EXPECT_NE(to_yaml(c).find("192.0.2.7/32"), std::string::npos) << to_yaml(c);
  const Config flags = config_from_yaml(backend, "none", {{"client_address.trusted_proxies", "172.16.0.0/12"}});
  EXPECT_EQ(flags.client_address.count, 0U) << "the default: the peer is the client";
  EXPECT_EQ(flags.client_address.networks.at(0).str(), "172.16.0.0/12");
  // trust_forwarded_headers trusts the hop in front: what it appends is the client.
  EXPECT_EQ(config_from_yaml(backend + "trust_forwarded_headers: true\n", "t").client_address.count, 1U);
  EXPECT_EQ(config_from_yaml(backend + "trust_forwarded_headers: true\nclient_address: {trusted_hops: 3}\n", "t")
                .client_address.count,
            3U);
  for (const char* bad :
       {"client_address:\n  trusted_proxies: [10.0.0.0/33]\n", "client_address:\n  trusted_proxies: [example.com]\n",
        "client_address:\n  trusted_hops: 33\n", "limits:\n  new_sessions_max_clients: 0\n"}) {
    try {
      config_from_yaml(backend + bad, "t.yaml");
      ADD_FAILURE() << bad;
    } catch (const ConfigError& e) {
      const std::string what = e.what();
      EXPECT_TRUE(what.find("client_address.") == 0 || what.find("limits.new_sessions_max_clients") == 0) << what;
      EXPECT_NE(what.find("t.yaml:3"), std::string::npos) << what;
    }
  }
}
