/* placeholder: codec */
