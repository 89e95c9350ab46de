#!/usr/bin/env node
// S2 key-derivation and cipher outputs computed by zwave-js's own implementation
// (@zwave-js/core), for inputs given on the command line as JSON, printed as JSON: the oracle for
// Warden's S2 primitives (adapters/zwave/tests/s2_oracle.rs).
"use strict";
const core = require("@zwave-js/core");
const { CtrDRBG } = core;

const hex = (b) => Buffer.from(b).toString("hex");
const bytes = (h) => Uint8Array.from(Buffer.from(h, "hex"));

(async () => {
  const input = JSON.parse(process.argv[2]);
  const nk = await core.deriveNetworkKeys(bytes(input.network_key));
  const tk = await core.deriveTempKeys(bytes(input.prk));
  const prk = await core.computePRK(bytes(input.shared), bytes(input.pub_a), bytes(input.pub_b));
  const noncePrk = await core.computeNoncePRK(bytes(input.sender_ei), bytes(input.receiver_ei));
  const mei = await core.deriveMEI(noncePrk);
  const drbg = new CtrDRBG();
  await drbg.init(Uint8Array.from(mei), nk.personalizationString);
  const nonces = [];
  for (let i = 0; i < 3; i++) nonces.push(hex((await drbg.generate(16)).subarray(0, 13)));
  const sealed = await core.encryptAES128CCM(bytes(input.plaintext), bytes(input.ccm_key),
    bytes(input.ccm_nonce), bytes(input.aad), 8);
  console.log(JSON.stringify({
    key_ccm: hex(nk.keyCCM), personalization: hex(nk.personalizationString), key_mpan: hex(nk.keyMPAN),
    temp_key_ccm: hex(tk.tempKeyCCM), temp_personalization: hex(tk.tempPersonalizationString),
    temp_prk: hex(prk), mei: hex(mei), nonces,
    sealed: hex(sealed.ciphertext) + hex(sealed.authTag),
  }));
})().catch((e) => { console.error(e); process.exit(1); });
