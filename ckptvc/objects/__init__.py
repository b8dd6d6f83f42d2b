"""Objects: content ids, the stored object format, codecs, chunking and manifests.

Nothing here knows where bytes live; ObjectDB binds this layer to a Store.
"""
