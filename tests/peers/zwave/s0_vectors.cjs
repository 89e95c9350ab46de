#!/usr/bin/env node
// Sequenced (two-frame) S0 encapsulation through zwave-js's own code, the oracle for Warden's
// S0 parts (adapters/zwave/tests/s0_oracle.rs). Input on the command line as JSON, output JSON.
//
// {"op":"decode", "network_key", "source", "own", "frames":[hex…], "nonces":[hex…]}
//   zwave-js's receive path decodes each frame (CommandClass.parse with an S0 SecurityManager
//   holding the receiver nonce of that frame) and, when the parts say they are a sequence, joins
//   them with mergePartialCCs and parses the command inside: prints each part's sequence fields
//   and the joined command's bytes and class.
// {"op":"encode", "network_key", "source", "own", "parts":[{"control", "payload", "sender",
//  "receiver"}…]}
//   Builds encapsulations with zwave-js's S0 primitives (generateAuthKey, generateEncryptionKey,
//   encryptAES128OFB, computeMAC) for the sequence bytes given: zwave-js's own serializer always
//   writes a sequence byte of 0, it never sends sequenced S0 itself.
"use strict";
const core = require("@zwave-js/core");
const { CommandClass } = require("@zwave-js/cc");

const hex = (b) => Buffer.from(b).toString("hex");
const bytes = (h) => Uint8Array.from(Buffer.from(h, "hex"));

async function decode(input) {
  const sm = new core.SecurityManager({
    networkKey: bytes(input.network_key), ownNodeId: input.own, nonceTimeout: 10000,
  });
  const ctx = {
    sourceNodeId: input.source, ownNodeId: input.own, securityManager: sm,
    getHighestSecurityClass: () => core.SecurityClass.S0_Legacy,
    hasSecurityClass: () => false, setSecurityClass: () => {}, getDeviceConfig: () => undefined,
    getSupportedCCVersion: () => 1, isCCSecure: () => true, getValueDB: () => undefined,
    tryGetValueDB: () => undefined,
  };
  const parts = [];
  for (let i = 0; i < input.frames.length; i++) {
    const nonce = bytes(input.nonces[i]);
    sm.setNonce(nonce[0], { receiver: input.source, nonce }, { free: false });
    parts.push(await CommandClass.parse(bytes(input.frames[i]), ctx));
  }
  const out = {
    parts: parts.map((p) => ({
      sequenced: !!p.sequenced, second: !!p.secondFrame, counter: p.sequenceCounter,
      bytes: hex(p.decryptedCCBytes), remaining: p.getRemainingSegments(),
    })),
  };
  const last = parts[parts.length - 1];
  if (last.getRemainingSegments() === 0) {
    await last.mergePartialCCs(parts.slice(0, -1), ctx);
    out.joined = hex(last.decryptedCCBytes);
    out.inner = last.encapsulated.constructor.name;
    if (last.encapsulated.encapsulated) {
      out.commands = last.encapsulated.encapsulated.map((c) => ({ name: c.constructor.name, value: c.value }));
    }
  }
  return out;
}

async function encode(input) {
  const nk = bytes(input.network_key);
  const auth = await core.generateAuthKey(nk);
  const enc = await core.generateEncryptionKey(nk);
  const frames = [];
  for (const p of input.parts) {
    const sender = bytes(p.sender);
    const receiver = bytes(p.receiver);
    const plain = Buffer.concat([Buffer.from([p.control]), Buffer.from(bytes(p.payload))]);
    const ct = await core.encryptAES128OFB(plain, enc, Buffer.concat([sender, receiver]));
    // The MAC's input as SecurityCC's getAuthenticationData lays it out (command 0x81).
    const authData = Buffer.concat([sender, receiver, Buffer.from([0x81, input.source, input.own, ct.length]), ct]);
    const mac = await core.computeMAC(authData, auth);
    frames.push(hex(Buffer.concat([Buffer.from([0x98, 0x81]), sender, ct, Buffer.from([receiver[0]]), mac])));
  }
  return { frames };
}

(async () => {
  const input = JSON.parse(process.argv[2]);
  const out = input.op === "encode" ? await encode(input) : await decode(input);
  console.log(JSON.stringify(out));
})().catch((e) => { console.error(e); process.exit(1); });
