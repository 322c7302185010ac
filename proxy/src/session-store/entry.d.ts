// Types of entry.js (`tether/session-store`): those of index.ts, whichever file entry.js loads.
export * from './index.ts';
/** The file entry.js loaded: `file://…/dist/proxy/src/session-store/index.js` (built) or `…/index.ts`. */
export declare const loadedFrom: string;
