export * from './testnet.js';
export * from './dht.js';
export * from './netns.js';
export * from './impairer.js';
export * from './netns-scenario.js';
export * from './netns-master.js';
export * from './attack.js';
export * from './engine-mesh.js';
