#!/usr/bin/env node
// S2 multicast frames made by zwave-js's own SecurityManager2 and Security2CC (MGRP extension,
// nonce from the group's MPAN under keyMPAN, AES-CCM under the class's key), for inputs given on
// the command line as JSON, printed as JSON: the oracle for Warden's multicast decryption
// (adapters/zwave/tests/s2_oracle.rs).
//   {"network_key", "sender", "home", "members":[…], "state": hex (the group's inner MPAN state),
//    "values":[°C…]} → {"group", "frames":[hex…], "commands":[hex…], "state_after": hex}
"use strict";
const core = require("@zwave-js/core");
const cc = require("@zwave-js/cc");

const hex = (b) => Buffer.from(b).toString("hex");

(async () => {
  const input = JSON.parse(process.argv[2]);
  const sm2 = await core.SecurityManager2.create();
  const cls = core.SecurityClass.S2_Unauthenticated;
  await sm2.setKey(cls, Buffer.from(input.network_key, "hex"));
  const group = sm2.createMulticastGroup(input.members, cls);
  // The group's inner state, chosen by the caller (zwave-js would draw it from its CTR_DRBG).
  sm2.mpanStates.set(group, Uint8Array.from(Buffer.from(input.state, "hex")));
  const ctx = {
    ownNodeId: input.sender, homeId: input.home, securityManager2: sm2,
    getHighestSecurityClass: () => cls, hasSecurityClass: () => true,
    getSupportedCCVersion: () => 11, isCCSecure: () => true,
  };
  const frames = [];
  const commands = [];
  for (const v of input.values) {
    const report = new cc.MultilevelSensorCCReport({ nodeId: input.members, type: 1, scale: 0, value: v });
    commands.push(hex(await report.serialize(ctx)));
    const enc = cc.Security2CC.encapsulate(report, input.sender, { securityManager2: sm2 }, { multicastGroupId: group });
    frames.push(hex(await enc.serialize(ctx)));
  }
  console.log(JSON.stringify({ group, frames, commands, state_after: hex(sm2.getInnerMPANState(group)) }));
})().catch((e) => { console.error(e); process.exit(1); });
