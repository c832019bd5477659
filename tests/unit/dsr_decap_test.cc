// The dsr_decap BPF program on crafted frames, run by the kernel (BPF_PROG_TEST_RUN):
// outer headers stripped exactly, everything else passed byte for byte, each packet
// counted by why. And its tc attachment, in a network namespace of the test's own.
// Needs root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN); the suite runs as root.
#include <bpf/bpf.h>
#include <linux/pkt_cls.h>
#include <net/if.h>
#include <sched.h>
#include <unistd.h>

#include <thread>

#include "control/dsr_node/decap_program.h"
#include "gtest/gtest.h"
#include "tests/helpers/packet_builder.h"

namespace lb::control::dsr_node {
namespace {

using ::lb::testing::Bytes;
using ::lb::testing::Concat;
using ::lb::testing::Ether;
using ::lb::testing::Gue;
using ::lb::testing::Ipv4;
using ::lb::testing::Ipv4Options;
using ::lb::testing::Ipv6;
using ::lb::testing::Tcp;
using ::lb::testing::Udp;

constexpr uint16_t kGuePort = 6080;
constexpr ::lb::testing::Mac kPodMac = {0x02, 0, 0, 0, 0, 0x02};
constexpr ::lb::testing::Mac kNodeMac = {0x02, 0, 0, 0, 0, 0x01};
constexpr char kVip4[] = "10.100.0.10";
constexpr char kVip6[] = "2001:db8:100::10";

Bytes Frame4(const Bytes& ip) { return Ether(kPodMac, kNodeMac, 0x0800, ip); }
Bytes Frame6(const Bytes& ip) { return Ether(kPodMac, kNodeMac, 0x86DD, ip); }

// What the client sent: the packet the pod must see.
Bytes Inner4(const char* dst = kVip4) { return Ipv4("198.51.100.7", dst, 17, Udp(40000, 53, Bytes(30, 0xab))); }
Bytes Inner6(const char* dst = kVip6) { return Ipv6("2001:db8:c::7", dst, 6, Tcp(40000, 80, 0x02)); }

// What lbd sends the pod (its outer source: the LB node's encap address).
Bytes Ipip(const Bytes& inner) { return Ipv4("10.90.0.2", "10.92.1.2", 4, inner, {.df = true}); }
Bytes Gue4(const Bytes& inner, uint8_t proto = 4) {
  return Ipv4("10.90.0.2", "10.92.1.2", 17, Udp(51234, kGuePort, Concat(Gue(proto), inner)), {.df = true});
}
Bytes Ip6ip6(const Bytes& inner) { return Ipv6("2001:db8:90::2", "2001:db8:92:1::2", 41, inner); }
Bytes Gue6(const Bytes& inner, uint8_t proto = 41) {
  return Ipv6("2001:db8:90::2", "2001:db8:92:1::2", 17, Udp(51234, kGuePort, Concat(Gue(proto), inner)));
}

struct TestRun {
  int verdict = -1;
  Bytes out;
};

class DsrDecapTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_FAIL() << "needs root: BPF programs and tc";
    auto loaded = DecapProgram::Load(kGuePort);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    program_ = std::move(*loaded);
    ASSERT_TRUE(program_->SetVips({*IpAddress::Parse(kVip4), *IpAddress::Parse(kVip6)}).ok());
  }

  TestRun RunOn(const Bytes& frame, DecapProgram* program = nullptr) {
    if (program == nullptr) program = program_.get();
    TestRun run;
    run.out.resize(frame.size() + 256);
    LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = frame.data(), .data_out = run.out.data(),
                .data_size_in = uint32_t(frame.size()), .data_size_out = uint32_t(run.out.size()), .repeat = 1);
    const int ret = bpf_prog_test_run_opts(program->prog_fd(), &opts);
    EXPECT_EQ(ret, 0) << "BPF_PROG_TEST_RUN";
    run.verdict = int(opts.retval);
    run.out.resize(opts.data_size_out);
    return run;
  }

  // The counter that moved since the last call, and that only one did.
  std::string CountedAs() {
    const DecapCounters now = program_->Counters();
    std::string which;
    for (int i = 0; i < DSR_DECAP_COUNTERS; ++i) {
      if (now[i] != last_[i]) which += (which.empty() ? "" : ",") + std::string(DecapCounterName(i));
    }
    last_ = now;
    return which;
  }

  void ExpectDecapsulated(const Bytes& frame, const Bytes& expected) {
    const TestRun run = RunOn(frame);
    EXPECT_EQ(run.verdict, TC_ACT_OK);
    EXPECT_EQ(run.out, expected) << "got      " << ::lb::testing::Hex(run.out) << "\nexpected "
                                 << ::lb::testing::Hex(expected);
    EXPECT_EQ(CountedAs(), "decapsulated");
  }
  void ExpectUntouched(const Bytes& frame, const std::string& reason) {
    const TestRun run = RunOn(frame);
    EXPECT_EQ(run.verdict, TC_ACT_OK);
    EXPECT_EQ(run.out, frame) << ::lb::testing::Hex(run.out);
    EXPECT_EQ(CountedAs(), reason);
  }

  std::unique_ptr<DecapProgram> program_;
  DecapCounters last_{};
};

TEST_F(DsrDecapTest, StripsIpipToTheInnerPacketExactly) {
  ExpectDecapsulated(Frame4(Ipip(Inner4())), Frame4(Inner4()));
}

TEST_F(DsrDecapTest, StripsAnOuterHeaderWithOptions) {
  const Bytes outer = Ipv4("10.90.0.2", "10.92.1.2", 4, Inner4(), {.ip_options = {1, 1, 1, 0}});
  ExpectDecapsulated(Frame4(outer), Frame4(Inner4()));
}

TEST_F(DsrDecapTest, StripsGueOverIpv4) { ExpectDecapsulated(Frame4(Gue4(Inner4())), Frame4(Inner4())); }

TEST_F(DsrDecapTest, SkipsGueExtensionWords) {
  Bytes gue = Gue(4);
  gue[0] = 2;  // Hlen: two extension words follow
  gue.insert(gue.end(), 8, 0x55);
  const Bytes outer = Ipv4("10.90.0.2", "10.92.1.2", 17, Udp(51234, kGuePort, Concat(gue, Inner4())));
  ExpectDecapsulated(Frame4(outer), Frame4(Inner4()));
}

TEST_F(DsrDecapTest, StripsIp6ip6AndGueOverIpv6) {
  ExpectDecapsulated(Frame6(Ip6ip6(Inner6())), Frame6(Inner6()));
  ExpectDecapsulated(Frame6(Gue6(Inner6())), Frame6(Inner6()));
}

TEST_F(DsrDecapTest, PassesWhatIsNotATunnel) {
  ExpectUntouched(Frame4(Inner4()), "not_tunnel");
  ExpectUntouched(Frame6(Inner6()), "not_tunnel");
  ExpectUntouched(Frame4(Ipv4("10.90.0.2", "10.92.1.2", 17, Udp(51234, 6081, Concat(Gue(4), Inner4())))),
                  "not_tunnel");                                                  // UDP on another port
  ExpectUntouched(Ether(kPodMac, kNodeMac, 0x0806, Bytes(28, 0)), "not_tunnel");  // ARP
  // An outer fragment: the kernel reassembles it; there is no inner header to read here.
  Ipv4Options fragment;
  fragment.mf = true;
  ExpectUntouched(Frame4(Ipv4("10.90.0.2", "10.92.1.2", 4, Inner4(), fragment)), "not_tunnel");
  // IPv6 extension headers before the tunnel: lbd sends none.
  ::lb::testing::Ipv6Options with_extension;
  with_extension.extensions = {{60, Bytes(6, 0)}};
  ExpectUntouched(Frame6(Ipv6("2001:db8:90::2", "2001:db8:92:1::2", 41, Inner6(), with_extension)), "not_tunnel");
}

TEST_F(DsrDecapTest, PassesATunnelToAnAddressThatIsNoVip) {
  ExpectUntouched(Frame4(Ipip(Inner4("10.100.0.99"))), "not_a_vip");
  ExpectUntouched(Frame4(Gue4(Inner4("10.100.0.99"))), "not_a_vip");
  ExpectUntouched(Frame6(Ip6ip6(Inner6("2001:db8:100::99"))), "not_a_vip");
}

TEST_F(DsrDecapTest, PassesAFamilyChange) {
  ExpectUntouched(Frame4(Ipv4("10.90.0.2", "10.92.1.2", 41, Inner6())), "other_family");
  ExpectUntouched(Frame6(Ipv6("2001:db8:90::2", "2001:db8:92:1::2", 4, Inner4())), "other_family");
  ExpectUntouched(Frame4(Gue4(Inner6(), 41)), "other_family");
}

TEST_F(DsrDecapTest, PassesMalformedTunnelsUntouched) {
  Bytes truncated = Frame4(Ipip(Inner4()));
  truncated.resize(14 + 20 + 12);  // half an inner header
  ExpectUntouched(truncated, "malformed");
  Bytes gue_v1 = Gue(4);
  gue_v1[0] = 0x40;  // version 1
  ExpectUntouched(Frame4(Ipv4("10.90.0.2", "10.92.1.2", 17, Udp(51234, kGuePort, Concat(gue_v1, Inner4())))),
                  "malformed");
  Bytes control = Gue(4);
  control[0] = 0x20;  // C: a control message
  ExpectUntouched(Frame4(Ipv4("10.90.0.2", "10.92.1.2", 17, Udp(51234, kGuePort, Concat(control, Inner4())))),
                  "malformed");
  Bytes wrong_version = Inner4();
  wrong_version[0] = 0x65;  // says IPv6 inside IPIP
  ExpectUntouched(Frame4(Ipip(wrong_version)), "malformed");
  Bytes short_gue = Frame4(Ipv4("10.90.0.2", "10.92.1.2", 17, Udp(51234, kGuePort, Bytes{0, 4})));
  ExpectUntouched(short_gue, "malformed");
}

TEST_F(DsrDecapTest, FollowsTheVipSet) {
  ASSERT_TRUE(program_->SetVips({*IpAddress::Parse("10.100.0.20")}).ok());
  ExpectUntouched(Frame4(Ipip(Inner4())), "not_a_vip");
  ExpectUntouched(Frame6(Ip6ip6(Inner6())), "not_a_vip");
  ExpectDecapsulated(Frame4(Ipip(Inner4("10.100.0.20"))), Frame4(Inner4("10.100.0.20")));
  std::vector<IpAddress> too_many(DSR_DECAP_MAX_VIPS + 1);
  EXPECT_EQ(program_->SetVips(too_many).code(), absl::StatusCode::kResourceExhausted);
}

TEST_F(DsrDecapTest, WithoutAGuePortGueIsNotATunnel) {
  auto no_gue = DecapProgram::Load(0);
  ASSERT_TRUE(no_gue.ok()) << no_gue.status();
  ASSERT_TRUE((*no_gue)->SetVips({*IpAddress::Parse(kVip4)}).ok());
  const Bytes frame = Frame4(Gue4(Inner4()));
  EXPECT_EQ(RunOn(frame, no_gue->get()).out, frame);
  EXPECT_EQ(RunOn(Frame4(Ipip(Inner4())), no_gue->get()).out, Frame4(Inner4()));
}

// Attach, find, replace and detach on an interface, in a namespace of this test's own
// (a thread that unshares its network namespace; it goes when the thread ends).
TEST_F(DsrDecapTest, AttachesReplacesAndDetachesOnAnInterface) {
  auto second = DecapProgram::Load(kGuePort);
  ASSERT_TRUE(second.ok()) << second.status();
  std::thread([&] {
    ASSERT_EQ(unshare(CLONE_NEWNET), 0);
    const int lo = int(if_nametoindex("lo"));
    ASSERT_GT(lo, 0);
    EXPECT_EQ(*AttachedProgramId(lo), 0u);
    ASSERT_TRUE(program_->AttachIngress(lo).ok());
    EXPECT_EQ(*AttachedProgramId(lo), program_->prog_id());
    ASSERT_TRUE(program_->AttachIngress(lo).ok()) << "attaching again replaces, it does not fail";
    ASSERT_TRUE((*second)->AttachIngress(lo).ok());
    EXPECT_EQ(*AttachedProgramId(lo), (*second)->prog_id());
    ASSERT_TRUE(DetachIngress(lo).ok());
    EXPECT_EQ(*AttachedProgramId(lo), 0u);
    EXPECT_TRUE(DetachIngress(lo).ok()) << "detaching what is not there is no error";
  }).join();
}

}  // namespace
}  // namespace lb::control::dsr_node
