#!/usr/bin/env node
// Warden's Z-Wave test peer: zwave-js's own MockController and MockNodes (npm zwave-js and
// @zwave-js/testing, pinned in package.json) behind a TCP port that speaks the Serial API, so the
// adapter under test talks to zwave-js's controller emulation byte for byte.
//
// Loopback only, no mDNS (zwave-js's stock mock-server binary announces itself by multicast, which
// these machines forbid). The host's byte stream is cut into single units (ACK/NAK/CAN or one
// frame) before it reaches the mock, which expects one unit per write.
//
//   node zwave_mock.cjs --port P --control-port C [--host 127.0.0.1] [--sensors N] [--home-id HEX]
// --sensors N adds N more multilevel sensors, node ids 10 … 9+N (at most 200), for load tests.
//
// Control port, one command per line, answered "OK …" or "ERR …":
//   temp <node> <celsius>          node sends a Multilevel Sensor Report (air temperature, °C)
//   switch <node> on|off           node sends a Binary Switch Report
//   appcmd <node> <hex>            an Application Command Handler frame from <node> with these
//                                  command-class bytes, valid or not (hostile input tests)
//   rawframe <hex>                 these bytes as they are (bad checksums, garbage)
//   wakeup <node>                  node sends a Wake Up Notification
//   s2temp <node> <celsius> [unauth|auth|ac]
//                                  an S2-encapsulated sensor report (nonce exchange first if
//                                  needed); with a class, a new session under that class's key
//   mcast <node> <celsius>         an S2 multicast report to a group of the host and node 2 (MGRP,
//                                  MPAN nonce), with the multicast bit in rxStatus
//   mcfollow <node> <celsius>      its singlecast follow-up (MGRP); when the host answers with a
//                                  Nonce Report with MOS, the node sends the group's MPAN
//                                  ("OK mcfollow <node> mos")
//   mute <node> on|off             the node's Supervision Reports are lost (it still acts on the
//                                  commands), or sent again
//   granted <node>                 the S2 classes the node holds towards the host (e.g. "unauth")
//   stealkey <from> <to> <class>   node <to> gets the class's key the host gave node <from>,
//                                  without being granted it (a key read out of another device)
//   replay                         the last node report sent to the host, again, byte for byte
//   badmac                         the last (S2) report with a new sequence number and a bad tag
//   s0temp <node> <celsius>        an S0-encapsulated sensor report (a nonce asked of the host first)
//   s0seq <node> <celsius> [ok|second|mismatch|repeat]
//                                  the report split over two sequenced S0 encapsulations (or a
//                                  hostile variant: the second part alone, the second with another
//                                  counter, the first part of the last completed sequence again)
//   include <node> sensor|switch|supswitch|supsleepy|s0sensor|s2sensor|s2auth|s2lock|s2multi   a node of that kind waits to be included
//                                  by the next Add Node; an S2 kind answers "OK include <node> pin=NNNNN"
//                                  with the PIN of its DSK (first two bytes of its public key), as
//                                  printed on a real device's label. s2auth asks for S2 Authenticated,
//                                  s2lock for S2 Access Control and Authenticated; both hide those two
//                                  bytes in their Public Key Report as the S2 specification requires.
//   state                          JSON: switch states, configuration parameter 1 per node, the node list
//   span <node>                    the node's S2 session state towards the host (e.g. "SPAN",
//                                  "RemoteEI" once it has taken a Nonce Report from the host)
//   sent <node> <hex>              how many SEND_DATA requests the host sent <node> whose payload
//                                  starts with <hex> (e.g. 9f02: S2 Nonce Reports)
//   quit
// ZWMOCK_TRACE=<file> appends every byte exchanged with the host to that file (debugging aid).
"use strict";
const net = require("node:net");
const { createAndOpenMockedZWaveSerialPort } = require("@zwave-js/serial/mock");
const { Faucet, ZWaveSerialFrameType } = require("@zwave-js/serial");
const { MockController, MockNode, createMockZWaveRequestFrame } = require("@zwave-js/testing");
const { createDefaultMockControllerBehaviors, createDefaultMockNodeBehaviors } = require("zwave-js/Testing");
const {
  CommandClasses, SecurityClass, SecurityManager2, SPANState, generateECDHKeyPair,
  generateAuthKey, generateEncryptionKey, encryptAES128OFB, computeMAC,
} = require("@zwave-js/core");
const cc = require("@zwave-js/cc");

const opt = (name, dflt) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const HOST = opt("--host", "127.0.0.1");
const PORT = Number(opt("--port", "5555"));
const CONTROL = Number(opt("--control-port", "5556"));

// another stick: --home-id deadbeef
const HOME_ID = parseInt(opt("--home-id", "c0ffee01"), 16);
let lastAppCmd = null;
let hostConnections = 0;
// What the host sent each node (SEND_DATA payloads as hex), newest 5,000.
const sentToNodes = [];
function noteHostFrame(u) {
  // SOF len REQ SEND_DATA(0x13) node plen payload…
  if (u.length > 6 && u[0] === 0x01 && u[2] === 0x00 && u[3] === 0x13) {
    const plen = u[5];
    sentToNodes.push({ node: u[4], hex: Buffer.from(u.subarray(6, 6 + plen)).toString("hex") });
    if (sentToNodes.length > 5000) sentToNodes.shift();
  }
}
const S2_CLASSES = [SecurityClass.S2_AccessControl, SecurityClass.S2_Authenticated, SecurityClass.S2_Unauthenticated];
const CLASS_NAMES = { ac: SecurityClass.S2_AccessControl, auth: SecurityClass.S2_Authenticated, unauth: SecurityClass.S2_Unauthenticated };
const temperatures = new Map();

function kind(name, id) {
  const common = [
    { ccId: CommandClasses["Manufacturer Specific"], isSupported: true, version: 2 },
    { ccId: CommandClasses.Version, isSupported: true, version: 3 },
  ];
  if (name === "switch") {
    return {
      genericDeviceClass: 0x10, specificDeviceClass: 0x01,
      manufacturerId: 0x0086, productType: 0x0003, productId: 0x0006,
      commandClasses: [{ ccId: CommandClasses["Binary Switch"], isSupported: true, version: 2 }, ...common],
    };
  }
  if (name === "sensor") {
    return {
      genericDeviceClass: 0x21, specificDeviceClass: 0x01,
      manufacturerId: 0x0371, productType: 0x0002, productId: 0x0005,
      commandClasses: [{
        ccId: CommandClasses["Multilevel Sensor"], isSupported: true, version: 11,
        sensors: { 1: { supportedScales: [0] } },
        getValue: () => temperatures.get(id) ?? 21.5,
      }, ...common],
    };
  }
  if (name === "s2sensor") {
    // A sensor that asks for S2 Unauthenticated when included; its keys come from the host's key
    // exchange (zwave-js's own S2 bootstrap behaviours), never from this script.
    return {
      genericDeviceClass: 0x21, specificDeviceClass: 0x01,
      manufacturerId: 0x0371, productType: 0x0002, productId: 0x0009,
      securityClasses: new Set([SecurityClass.S2_Unauthenticated]),
      commandClasses: [
        { ccId: CommandClasses["Security 2"], isSupported: true, version: 1 },
        { ccId: CommandClasses["Multilevel Sensor"], isSupported: true, version: 11, secure: true,
          sensors: { 1: { supportedScales: [0] } }, getValue: () => temperatures.get(id) ?? 20.0 },
        { ccId: CommandClasses["Manufacturer Specific"], isSupported: true, version: 2, secure: true },
        { ccId: CommandClasses.Version, isSupported: true, version: 3, secure: true },
      ],
    };
  }
  if (name === "s0sensor") {
    // A legacy S0 sensor: zwave-js's mock runs the S0 side (Scheme Report, the network key from the
    // host's Network Key Set, nonces, encapsulation).
    return {
      genericDeviceClass: 0x21, specificDeviceClass: 0x01,
      manufacturerId: 0x0371, productType: 0x0002, productId: 0x000c,
      securityClasses: new Set([SecurityClass.S0_Legacy]),
      commandClasses: [
        { ccId: CommandClasses.Security, isSupported: true, version: 1 },
        { ccId: CommandClasses["Multilevel Sensor"], isSupported: true, version: 11, secure: true,
          sensors: { 1: { supportedScales: [0] } }, getValue: () => temperatures.get(id) ?? 19.0 },
        ...common,
      ],
    };
  }
  if (name === "supswitch") {
    // A relay that supports Supervision: zwave-js's mock answers a supervised Set with Success, or
    // Fail when it refuses it (a configuration parameter it lacks or a value out of range).
    return {
      genericDeviceClass: 0x10, specificDeviceClass: 0x01,
      manufacturerId: 0x0086, productType: 0x0003, productId: 0x0010,
      commandClasses: [
        { ccId: CommandClasses["Binary Switch"], isSupported: true, version: 2 },
        { ccId: CommandClasses.Supervision, isSupported: true, version: 2 },
        { ccId: CommandClasses.Configuration, isSupported: true, version: 4,
          parameters: [{ "#": 1, valueSize: 4, minValue: 0, maxValue: 10, defaultValue: 0 }] },
        ...common,
      ],
    };
  }
  if (name === "s2multi") {
    // Asks for S2 Access Control and S2 Unauthenticated at once: without the DSK PIN, the host
    // should grant only the second.
    return {
      genericDeviceClass: 0x21, specificDeviceClass: 0x01,
      manufacturerId: 0x0371, productType: 0x0002, productId: 0x000e,
      securityClasses: new Set([SecurityClass.S2_AccessControl, SecurityClass.S2_Unauthenticated]),
      commandClasses: [
        { ccId: CommandClasses["Security 2"], isSupported: true, version: 1 },
        { ccId: CommandClasses["Multilevel Sensor"], isSupported: true, version: 11, secure: true,
          sensors: { 1: { supportedScales: [0] } }, getValue: () => temperatures.get(id) ?? 20.0 },
        { ccId: CommandClasses["Manufacturer Specific"], isSupported: true, version: 2, secure: true },
        { ccId: CommandClasses.Version, isSupported: true, version: 3, secure: true },
      ],
    };
  }
  if (name === "s2auth" || name === "s2lock") {
    // Like s2sensor, but asking for the classes that need the DSK PIN.
    return {
      genericDeviceClass: 0x21, specificDeviceClass: 0x01,
      manufacturerId: 0x0371, productType: 0x0002, productId: name === "s2auth" ? 0x000a : 0x000b,
      securityClasses: new Set(name === "s2auth"
        ? [SecurityClass.S2_Authenticated]
        : [SecurityClass.S2_AccessControl, SecurityClass.S2_Authenticated]),
      commandClasses: [
        { ccId: CommandClasses["Security 2"], isSupported: true, version: 1 },
        { ccId: CommandClasses["Multilevel Sensor"], isSupported: true, version: 11, secure: true,
          sensors: { 1: { supportedScales: [0] } }, getValue: () => temperatures.get(id) ?? 20.0 },
        { ccId: CommandClasses["Manufacturer Specific"], isSupported: true, version: 2, secure: true },
        { ccId: CommandClasses.Version, isSupported: true, version: 3, secure: true },
      ],
    };
  }
  if (name === "sleepy") {
    // A battery sensor: not listening, wakes up now and then (the `wakeup` control command).
    return {
      isListening: false, isFrequentListening: false,
      genericDeviceClass: 0x21, specificDeviceClass: 0x01,
      manufacturerId: 0x0371, productType: 0x0002, productId: 0x0007,
      commandClasses: [{
        ccId: CommandClasses["Multilevel Sensor"], isSupported: true, version: 11,
        sensors: { 1: { supportedScales: [0] } },
        getValue: () => temperatures.get(id) ?? 18.0,
      }, { ccId: CommandClasses["Wake Up"], isSupported: true, version: 2 }, ...common],
    };
  }
  if (name === "supsleepy") {
    // A battery sensor that supports Supervision and has a configuration parameter: Warden must
    // hold a Set for it until it wakes, then supervise it; zwave-js's mock answers the
    // Supervision Get (Success, or Fail for a parameter it lacks or a value out of range).
    return {
      isListening: false, isFrequentListening: false,
      genericDeviceClass: 0x21, specificDeviceClass: 0x01,
      manufacturerId: 0x0371, productType: 0x0002, productId: 0x000d,
      commandClasses: [{
        ccId: CommandClasses["Multilevel Sensor"], isSupported: true, version: 11,
        sensors: { 1: { supportedScales: [0] } },
        getValue: () => temperatures.get(id) ?? 16.0,
      }, { ccId: CommandClasses["Wake Up"], isSupported: true, version: 2 },
      { ccId: CommandClasses.Supervision, isSupported: true, version: 2 },
      { ccId: CommandClasses.Configuration, isSupported: true, version: 4,
        parameters: [{ "#": 1, valueSize: 4, minValue: 0, maxValue: 10, defaultValue: 0 }] },
      ...common],
    };
  }
  throw new Error(`unknown node kind ${name}`);
}

// SOF LEN body CHECKSUM around a Serial API body (type, function, data).
function serialFrame(body) {
  const len = body.length + 1;
  let sum = 0xff ^ len;
  for (const b of body) sum ^= b;
  return Buffer.concat([Buffer.from([0x01, len]), body, Buffer.from([sum])]);
}

// One unit per write into the mock: ACK/NAK/CAN bytes alone, frames whole; an unfinished frame
// is dropped after 1.5 s like a controller's receive timeout.
function unitSplitter(deliver) {
  let pending = Buffer.alloc(0);
  let timer = null;
  return (chunk) => {
    pending = Buffer.concat([pending, chunk]);
    if (timer) { clearTimeout(timer); timer = null; }
    while (pending.length > 0) {
      const first = pending[0];
      if (first === 0x06 || first === 0x15 || first === 0x18) {
        deliver(pending.subarray(0, 1));
        pending = pending.subarray(1);
      } else if (first !== 0x01) {
        pending = pending.subarray(1);
      } else if (pending.length >= 2 && pending.length >= pending[1] + 2) {
        const n = pending[1] + 2;
        deliver(pending.subarray(0, n));
        pending = pending.subarray(n);
      } else {
        break;
      }
    }
    if (pending.length > 0) timer = setTimeout(() => { pending = Buffer.alloc(0); }, 1500);
  };
}

async function main() {
  const { serial, port: mockPort } = await createAndOpenMockedZWaveSerialPort();
  const controller = await MockController.create({ homeId: HOME_ID, ownNodeId: 1, mockPort, serial });
  controller.defineBehavior(...createDefaultMockControllerBehaviors());
  // An S2-capable controller emulation. zwave-js's MockNode copies the controller's keys into every
  // S2 node it creates, so these are throwaway random keys the host never knows; each node included
  // here starts with no class granted towards the controller (see `include`) and gets the host's key
  // only through the host's key exchange.
  const sm2 = await SecurityManager2.create();
  for (const c of S2_CLASSES) await sm2.setKey(c, require("node:crypto").randomBytes(16));
  controller.securityManagers.securityManager2 = sm2;
  const addNode = async (id, name) => {
    const node = await MockNode.create({ id, controller, capabilities: kind(name, id) });
    node.defineBehavior(...createDefaultMockNodeBehaviors());
    controller.addNode(node);
    return node;
  };
  await addNode(2, "switch");
  await addNode(3, "sensor");
  await addNode(5, "sleepy");
  const extra = Math.min(Number(opt("--sensors", "0")) || 0, 200);
  for (let i = 0; i < extra; i++) await addNode(10 + i, "sensor");
  const node = (id) => controller.nodes.get(Number(id));
  // The multicast group each node last sent to (mcast), and how many Nonce Reports with MOS the
  // host sent each node (mcfollow).
  const mcastGroups = new Map();
  // Nodes whose Supervision Reports are dropped (mute).
  const muted = new Map();
  const mosSeen = new Map();
  // The counter of each node's last completed sequenced S0 command (s0seq).
  const s0Counters = new Map();
  // An S0 nonce from the host for node n; the host answers Nonce Gets within a per-node budget,
  // so one that goes unanswered is asked again after the budget's refill period.
  const hostNonce = async (n) => {
    for (let attempt = 0; attempt < 6; attempt++) {
      await fromNode(n, new cc.SecurityCCNonceGet({ nodeId: controller.ownNodeId }));
      try {
        const r = await n.expectControllerFrame((f) => f.payload instanceof cc.SecurityCCNonceReport, { timeout: 2500 });
        return Buffer.from(r.payload.nonce);
      } catch { /* over the host's budget: ask again */ }
    }
    throw new Error("the host gave no S0 nonce");
  };

  const faucet = new Faucet(serial.readable);
  const server = net.createServer((sock) => {
    hostConnections += 1;
    sock.setNoDelay(true);
    const out = new WritableStream({
      write(f) {
        if (f.type !== ZWaveSerialFrameType.SerialAPI) return;
        const bytes = typeof f.data === "number" ? Buffer.from([f.data]) : Buffer.from(f.data);
        // The last node report handed to the host, for the replay and bad-MAC commands.
        if (bytes.length > 4 && bytes[0] === 0x01 && bytes[2] === 0x00 && bytes[3] === 0x04) lastAppCmd = bytes;
        if (process.env.ZWMOCK_TRACE) require("node:fs").appendFileSync(process.env.ZWMOCK_TRACE, `${Date.now()} M>H ${Buffer.from(bytes).toString("hex")}\n`);
        sock.write(bytes);
      },
    });
    faucet.connect(out);
    const split = unitSplitter((u) => { noteHostFrame(u); serial.writeAsync(Uint8Array.from(u)).catch(() => {}); });
    sock.on("data", (d) => { if (process.env.ZWMOCK_TRACE) require("node:fs").appendFileSync(process.env.ZWMOCK_TRACE, `${Date.now()} H>M ${d.toString("hex")}\n`); split(d); });
    sock.on("error", () => {});
    sock.on("close", () => { faucet.disconnect(); out.close().catch(() => {}); });
  });
  server.maxConnections = 1;
  server.listen(PORT, HOST);

  const fromNode = async (n, report) =>
    n.sendToController(createMockZWaveRequestFrame(report, { ackRequested: false }));

  const commands = {
    // how many times a host has connected to the serial port
    async connections() {
      return String(hostConnections);
    },
    async temp(id, v) {
      const n = node(id); if (!n) throw new Error(`no node ${id}`);
      temperatures.set(n.id, Number(v));
      await fromNode(n, new cc.MultilevelSensorCCReport({ nodeId: controller.ownNodeId, type: 1, scale: 0, value: Number(v) }));
      return `temp ${n.id}`;
    },
    async switch(id, v) {
      const n = node(id); if (!n) throw new Error(`no node ${id}`);
      await fromNode(n, new cc.BinarySwitchCCReport({ nodeId: controller.ownNodeId, currentValue: v === "on" }));
      return `switch ${n.id}`;
    },
    async appcmd(id, hex) {
      // An Application Command Handler frame from node <id> carrying any bytes (malformed, or
      // Security 2 encapsulated), built here rather than by zwave-js's CC classes, which refuse
      // to build invalid commands.
      const p = Buffer.from(hex, "hex");
      await controller.sendToHost(serialFrame(Buffer.concat([Buffer.from([0x00, 0x04, 0x00, Number(id), p.length]), p])));
      return `appcmd ${id}`;
    },
    async rawframe(hex) {
      if (process.env.ZWMOCK_TRACE) require("node:fs").appendFileSync(process.env.ZWMOCK_TRACE, `${Date.now()} RAW ${hex}\n`);
      try {
        await controller.sendToHost(Buffer.from(hex, "hex"));
        return "rawframe acked";
      } catch {
        return "rawframe not acked";
      }
    },
    async s2temp(id, v, cls) {
      // An S2-encapsulated Multilevel Sensor Report; asks the host for a nonce first when the
      // node has no session with it. With a class (unauth|auth|ac), a new session is started
      // and the report goes under that class's key, whatever the node was granted.
      const n = node(id); if (!n) throw new Error(`no node ${id}`);
      const sm2 = n.securityManagers.securityManager2;
      if (!sm2) throw new Error(`node ${id} has no S2`);
      const securityClass = cls === undefined ? undefined : CLASS_NAMES[cls];
      if (cls !== undefined && securityClass === undefined) throw new Error(`unknown class ${cls}`);
      temperatures.set(n.id, Number(v));
      if (securityClass !== undefined || sm2.getSPANState(controller.ownNodeId).type !== SPANState.SPAN) {
        await fromNode(n, new cc.Security2CCNonceGet({ nodeId: controller.ownNodeId }));
        await n.expectControllerFrame(
          (f) => f.payload instanceof cc.Security2CCNonceReport && f.payload.SOS, { timeout: 3000 });
      }
      const report = new cc.MultilevelSensorCCReport({ nodeId: controller.ownNodeId, type: 1, scale: 0, value: Number(v) });
      await fromNode(n, cc.Security2CC.encapsulate(report, n.id, n.securityManagers, { securityClass }));
      return `s2temp ${n.id}`;
    },
    async mcast(id, v) {
      // An S2 multicast Multilevel Sensor Report from the node to a group of the host and node 2
      // (zwave-js's SecurityManager2 keeps the group and its MPAN; Security2CC adds the MGRP
      // extension and encrypts with the MPAN's nonce), handed to the host with the multicast bit
      // of rxStatus set, as a controller reports a multicast it received.
      const n = node(id); if (!n) throw new Error(`no node ${id}`);
      const sm2 = n.securityManagers.securityManager2;
      if (!sm2) throw new Error(`node ${id} has no S2`);
      const cls = n.encodingContext.getHighestSecurityClass(controller.ownNodeId);
      const group = sm2.createMulticastGroup([controller.ownNodeId, 2], cls);
      mcastGroups.set(n.id, group);
      const members = [controller.ownNodeId, 2];
      const report = new cc.MultilevelSensorCCReport({ nodeId: members, type: 1, scale: 0, value: Number(v) });
      const enc = cc.Security2CC.encapsulate(report, n.id, n.securityManagers, { multicastGroupId: group });
      const bytes = Buffer.from(await enc.serialize(n.encodingContext));
      await controller.sendToHost(serialFrame(Buffer.concat([Buffer.from([0x00, 0x04, 0x08, n.id, bytes.length]), bytes])));
      return `mcast ${n.id} group=${group}`;
    },
    async mcfollow(id, v) {
      // The singlecast follow-up of the last multicast (the same report, S2 with the group's MGRP
      // extension); the group's MPAN then moves on, as zwave-js's driver does after a multicast.
      // A host that answers with a Nonce Report with MOS gets the group's MPAN in an S2 frame
      // that carries only the MPAN extension, as a node does.
      const n = node(id); if (!n) throw new Error(`no node ${id}`);
      const sm2 = n.securityManagers.securityManager2;
      const group = mcastGroups.get(n.id);
      if (group === undefined) throw new Error(`node ${id} sent no multicast`);
      if (sm2.getSPANState(controller.ownNodeId).type !== SPANState.SPAN) {
        await fromNode(n, new cc.Security2CCNonceGet({ nodeId: controller.ownNodeId }));
        await n.expectControllerFrame(
          (f) => f.payload instanceof cc.Security2CCNonceReport && f.payload.SOS, { timeout: 3000 });
      }
      const mos = n.expectControllerFrame(
        (f) => f.payload instanceof cc.Security2CCNonceReport && f.payload.MOS, { timeout: 2000 }).then(() => true, () => false);
      const report = new cc.MultilevelSensorCCReport({ nodeId: controller.ownNodeId, type: 1, scale: 0, value: Number(v) });
      await fromNode(n, cc.Security2CC.encapsulate(report, n.id, n.securityManagers, { multicastGroupId: group }));
      sm2.tryIncrementMPAN(group);
      if (!(await mos)) return `mcfollow ${n.id}`;
      mosSeen.set(n.id, (mosSeen.get(n.id) ?? 0) + 1);
      const mpan = new cc.Security2CCMessageEncapsulation({
        nodeId: controller.ownNodeId,
        extensions: [new cc.MPANExtension({ groupId: group, innerMPANState: sm2.getInnerMPANState(group) })],
      });
      // Straight to the host (as mcast sends), so it is there before any later multicast: a
      // mock node's own frames reach the host after an emulated radio delay.
      const bytes = Buffer.from(await mpan.serialize(n.encodingContext));
      await controller.sendToHost(serialFrame(Buffer.concat([Buffer.from([0x00, 0x04, 0x00, n.id, bytes.length]), bytes])));
      return `mcfollow ${n.id} mos`;
    },
    async mute(id, onoff) {
      // The node still carries out supervised commands but its Supervision Reports are lost
      // (on), or sent again (off).
      const n = node(id); if (!n) throw new Error(`no node ${id}`);
      if (!muted.has(n.id)) {
        muted.set(n.id, false);
        n.defineBehavior({
          transformResponse(ctrl, self, received, response) {
            const report = response.action === "sendCC" && response.cc instanceof cc.SupervisionCCReport;
            return muted.get(self.id) && report ? { action: "stop" } : response;
          },
        });
      }
      muted.set(n.id, onoff === "on");
      return `mute ${n.id} ${onoff === "on" ? "on" : "off"}`;
    },
    async granted(id) {
      // The S2 classes the node itself holds towards the controller (what the host's KEX Set gave it).
      const n = node(id); if (!n) throw new Error(`no node ${id}`);
      return Object.entries(CLASS_NAMES)
        .filter(([, c]) => n.encodingContext.hasSecurityClass(controller.ownNodeId, c) === true)
        .map(([name]) => name).join(",") || "none";
    },
    async stealkey(from, to, cls) {
      // Node <to> gets the network key of class <cls> that the host gave node <from>, as an
      // attacker who read it out of another device would hold it; <to> is not granted the class.
      const a = node(from); const b = node(to);
      if (!a || !b) throw new Error("no such node");
      const c = CLASS_NAMES[cls]; if (c === undefined) throw new Error(`unknown class ${cls}`);
      if (a.encodingContext.hasSecurityClass(controller.ownNodeId, c) !== true) throw new Error(`node ${from} does not hold ${cls}`);
      await b.securityManagers.securityManager2.setKey(c, a.securityManagers.securityManager2.getKeysForSecurityClass(c).pnk);
      return `stealkey ${to}`;
    },
    async s0temp(id, v) {
      // An S0-encapsulated sensor report, with a nonce asked of the host first.
      const n = node(id); if (!n) throw new Error(`no node ${id}`);
      const sm0 = n.securityManagers.securityManager;
      if (!sm0) throw new Error(`node ${id} has no S0`);
      temperatures.set(n.id, Number(v));
      await fromNode(n, new cc.SecurityCCNonceGet({ nodeId: controller.ownNodeId }));
      const r = await n.expectControllerFrame((f) => f.payload instanceof cc.SecurityCCNonceReport, { timeout: 3000 });
      const report = new cc.MultilevelSensorCCReport({ nodeId: controller.ownNodeId, type: 1, scale: 0, value: Number(v) });
      const enc = cc.SecurityCC.encapsulate(n.id, sm0, report);
      enc.nonce = r.payload.nonce;
      await fromNode(n, enc);
      return `s0temp ${n.id}`;
    },
    async s0seq(id, v, mode = "ok") {
      // A sensor report from an S0 node split over two sequenced encapsulations, each under a
      // nonce asked of the host. zwave-js never sends sequenced S0 (its serializer writes a
      // sequence byte of 0), so the parts are built here with zwave-js's S0 primitives and the
      // node's network key. Modes: ok (first part, then second), second (the second part alone),
      // mismatch (the second part with another counter), repeat (the first part of the sequence
      // this node completed last, again).
      const n = node(id); if (!n) throw new Error(`no node ${id}`);
      const sm0 = n.securityManagers.securityManager;
      if (!sm0) throw new Error(`node ${id} has no S0`);
      const ctx = n.encodingContext;
      const report = new cc.MultilevelSensorCCReport({ nodeId: controller.ownNodeId, type: 1, scale: 0, value: Number(v) });
      const bytes = Buffer.from(await report.serialize(ctx));
      const half = Math.ceil(bytes.length / 2);
      const last = s0Counters.get(n.id);
      const c = mode === "repeat" ? last : (((last ?? 0) + 1) & 0x0f);
      if (c === undefined) throw new Error("no completed sequence to repeat");
      const parts = {
        ok: [[0x10 | c, bytes.subarray(0, half)], [0x30 | c, bytes.subarray(half)]],
        second: [[0x30 | c, bytes.subarray(half)]],
        mismatch: [[0x10 | c, bytes.subarray(0, half)], [0x30 | ((c + 1) & 0x0f), bytes.subarray(half)]],
        repeat: [[0x10 | c, bytes.subarray(0, half)]],
      }[mode];
      if (!parts) throw new Error(`unknown mode ${mode}`);
      const auth = await generateAuthKey(sm0.networkKey);
      const enc = await generateEncryptionKey(sm0.networkKey);
      for (const [control, payload] of parts) {
        const receiver = await hostNonce(n);
        const sender = require("node:crypto").randomBytes(8);
        const plain = Buffer.concat([Buffer.from([control]), payload]);
        const ct = Buffer.from(await encryptAES128OFB(plain, enc, Buffer.concat([sender, receiver])));
        // the MAC's input as zwave-js's SecurityCC lays it out (command 0x81)
        const authData = Buffer.concat([sender, receiver, Buffer.from([0x81, n.id, controller.ownNodeId, ct.length]), ct]);
        const mac = Buffer.from(await computeMAC(authData, auth));
        const frame = Buffer.concat([Buffer.from([0x98, 0x81]), sender, ct, Buffer.from([receiver[0]]), mac]);
        await controller.sendToHost(serialFrame(Buffer.concat([Buffer.from([0x00, 0x04, 0x00, n.id, frame.length]), frame])));
      }
      if (mode === "ok") s0Counters.set(n.id, c);
      return `s0seq ${n.id}`;
    },
    async replay() {
      if (!lastAppCmd) throw new Error("nothing to replay");
      await controller.sendToHost(lastAppCmd);
      return "replay";
    },
    async badmac() {
      // The last report with its S2 sequence number changed and one tag byte flipped.
      if (!lastAppCmd) throw new Error("no frame");
      const f = Buffer.from(lastAppCmd);
      if (f[7] !== 0x9f || f[8] !== 0x03) throw new Error("the last report is not S2");
      f[9] = (f[9] + 128) & 0xff;
      f[f.length - 2] ^= 0x5a;
      let sum = 0xff;
      for (let i = 1; i < f.length - 1; i++) sum ^= f[i];
      f[f.length - 1] = sum;
      await controller.sendToHost(f);
      return "badmac";
    },
    async wakeup(id) {
      const n = node(id); if (!n) throw new Error(`no node ${id}`);
      await fromNode(n, new cc.WakeUpCCWakeUpNotification({ nodeId: controller.ownNodeId }));
      return `wakeup ${n.id}`;
    },
    async include(id, name) {
      const capabilities = kind(name, Number(id));
      // The node's key pair is made here so the PIN on its "label" is known before inclusion.
      const pair = capabilities.securityClasses ? await generateECDHKeyPair() : null;
      controller.nodePendingInclusion = {
        id: Number(id),
        capabilities,
        setup: (n) => {
          // Nothing granted before the bootstrap: the node must not use the throwaway keys.
          for (const c of S2_CLASSES) n.encodingContext.setSecurityClass(controller.ownNodeId, c, false);
          if (!pair) return;
          n.ecdhKeyPair = pair;
          // The keys the host's KEX Set granted. zwave-js's mock node echoes the keys it asked
          // for in its KEX Set echo (a TODO in zwave-js 15.29.0); a real node echoes the granted
          // ones, which the host checks, so the echo is corrected here.
          let grantedKeys = null;
          // A node granted Authenticated or Access Control sends its public key with the first two
          // bytes (the PIN) zeroed; zwave-js's mock node sends them, so hide them here.
          n.defineBehavior({
            transformIncomingCC(ctrl, self, received) {
              if (received instanceof cc.Security2CCKEXSet && !received.echo) grantedKeys = [...received.grantedKeys];
              return received;
            },
            transformResponse(ctrl, self, received, response) {
              const inner = response.action === "sendCC" ? response.cc?.encapsulated : undefined;
              if (grantedKeys && inner instanceof cc.Security2CCKEXSet && inner.echo) inner.grantedKeys = [...grantedKeys];
              const authed = received instanceof cc.Security2CCKEXSet && !received.echo
                && received.grantedKeys.some((k) => k === SecurityClass.S2_Authenticated || k === SecurityClass.S2_AccessControl);
              if (authed && response.action === "sendCC" && response.cc instanceof cc.Security2CCPublicKeyReport) {
                const hidden = Uint8Array.from(response.cc.publicKey);
                hidden[0] = 0; hidden[1] = 0;
                response.cc = new cc.Security2CCPublicKeyReport({ nodeId: ctrl.ownNodeId, includingNode: false, publicKey: hidden });
              }
              return response;
            },
          });
        },
      };
      if (!pair) return `include ${id}`;
      const pin = String((pair.publicKey[0] << 8) | pair.publicKey[1]).padStart(5, "0");
      return `include ${id} pin=${pin}`;
    },
    async state() {
      const switches = {};
      const config = {};
      for (const [id, n] of controller.nodes) {
        const v = n.state.get("BinarySwitch_currentValue");
        if (v !== undefined) switches[id] = v;
        const c = n.state.get("Configuration_value_1");
        if (c !== undefined) config[id] = c;
      }
      return JSON.stringify({ nodes: [...controller.nodes.keys()], switches, config });
    },
    async span(id) {
      // the node's S2 session state towards the host (None, LocalEI, RemoteEI, SPAN): RemoteEI once
      // it has parsed a Nonce Report the host sent it
      const n = node(id); if (!n) throw new Error(`no node ${id}`);
      const sm2 = n.securityManagers.securityManager2;
      if (!sm2) throw new Error(`node ${id} has no S2`);
      return SPANState[sm2.getSPANState(controller.ownNodeId).type];
    },
    async sent(id, prefix) {
      const p = String(prefix).toLowerCase();
      return String(sentToNodes.filter((x) => x.node === Number(id) && x.hex.startsWith(p)).length);
    },
    async quit() { setTimeout(() => process.exit(0), 10); return "bye"; },
  };

  net.createServer((sock) => {
    let buf = "";
    sock.on("error", () => {});
    sock.on("data", async (d) => {
      buf += d.toString();
      for (let i = buf.indexOf("\n"); i >= 0; i = buf.indexOf("\n")) {
        const [cmd, ...args] = buf.slice(0, i).trim().split(/\s+/);
        buf = buf.slice(i + 1);
        if (!cmd) continue;
        try {
          const f = commands[cmd];
          if (!f) throw new Error(`unknown command ${cmd}`);
          sock.write(`OK ${await f(...args)}\n`);
        } catch (e) {
          sock.write(`ERR ${e.message}\n`);
        }
      }
    });
  }).listen(CONTROL, HOST, () => console.log(`zwave mock on ${HOST}:${PORT}, control ${CONTROL}`));
  const stop = () => process.exit(0);
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main().catch((e) => { console.error(e); process.exit(1); });
